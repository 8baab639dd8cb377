"""How silr sets up transformers objects, in one place for refine, reward and align.

- :data:`DTYPES`: the dtype names that configs accept (``finetune.bnb_4bit_compute_dtype``, ``policy.dtype``).
- :func:`load_classifier_tokenizer`: the tokenizer of a one-logit classifier, padded and truncated on the right, so
  that refine's scores, the saved classifier and the exported reward model cut and pad every text the same way.
- :func:`quiet_transformers`: transformers' own log at ERROR level for a block whose warnings are expected.

transformers itself is imported inside the functions: importing this module costs only torch.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator

import torch

from refine.errors import SilrError

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def load_classifier_tokenizer(path: str | os.PathLike, *, trust_remote_code: bool = False):
    """The tokenizer in ``path`` (a folder or Hub id), set up as silr trains and scores its classifiers.

    It pads and truncates on the right, always: the exported reward model (``reward.export``) states this, and its
    scores equal refine's only if both sides cut texts the same way. A decoder without a pad token gets its EOS token
    as pad, as transformers' sequence classifiers expect.

    Raises:
        SilrError: If the tokenizer has neither a pad nor an EOS token.
    """
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(path, trust_remote_code=trust_remote_code)
    if tokenizer.pad_token is None:
        if tokenizer.eos_token is None:
            raise SilrError(f"the tokenizer in {path} has no pad or EOS token; set tokenizer.pad_token and save it.")
        tokenizer.pad_token = tokenizer.eos_token
    tokenizer.padding_side = "right"
    tokenizer.truncation_side = "right"
    return tokenizer


@contextlib.contextmanager
def quiet_transformers() -> Iterator[None]:
    """Only errors from transformers' log inside the block (its verbosity is restored after)."""
    from transformers.utils import logging as transformers_logging

    previous = transformers_logging.get_verbosity()
    transformers_logging.set_verbosity_error()
    try:
        yield
    finally:
        transformers_logging.set_verbosity(previous)
