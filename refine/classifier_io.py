"""Save and load a refined classifier: the trained head plus what is needed to rebuild the full model.

Folder layout (``refine/iter_<k>/classifier/``)::

    head.safetensors    the head's parameters under their names in the full model (e.g. ``classifier.weight``)
    classifier.json     base model, head family, max_length, decision threshold, text template

:func:`load_refined_classifier` puts the head into the base ``AutoModelForSequenceClassification``; the result's
logit is ``unsafe_logit`` (positive means unsafe) and equals the score computed during refinement.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from refine.heads import ClassifierHead
from refine.rundir import atomic_dir, read_json, write_json

HEAD_FILE = "head.safetensors"
META_FILE = "classifier.json"


@dataclass
class ClassifierMeta:
    """What, besides the head weights, defines a refined classifier."""

    model_name_or_path: str  # base model (alias, folder or Hub id)
    family: str  # head family, see refine.heads
    max_length: int  # tokens per text; longer texts are truncated on the right
    threshold: float  # decision threshold on unsafe_logit (unsafe iff logit > threshold)
    template: str  # how prompt/response pairs were joined into one text
    trust_remote_code: bool = False


def save_refined_classifier(folder: str | os.PathLike, head: ClassifierHead, meta: ClassifierMeta) -> None:
    """Write ``head.safetensors`` and ``classifier.json`` into ``folder`` atomically."""
    from safetensors.torch import save_file

    with atomic_dir(folder) as tmp:
        save_file(head.model_state_dict(), str(tmp / HEAD_FILE))
        write_json(tmp / META_FILE, asdict(meta))


def read_classifier_meta(folder: str | os.PathLike) -> ClassifierMeta:
    path = Path(folder) / META_FILE
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found; {folder} is not a refined classifier folder (refine/iter_<k>/classifier).")
    return ClassifierMeta(**read_json(path))


def read_head_state(folder: str | os.PathLike) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    path = Path(folder) / HEAD_FILE
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found; rerun the refine iteration that writes it.")
    try:
        return load_file(path)
    except Exception as err:
        raise ValueError(f"{path} is corrupt ({type(err).__name__}); delete the iteration folder and rerun refine.") from err


def load_refined_classifier(folder: str | os.PathLike):
    """The full classifier: ``(model, tokenizer, meta)``, the model in eval mode with the trained head in place.

    Raises:
        FileNotFoundError: If the folder lacks ``head.safetensors`` or ``classifier.json``.
        ValueError: If the head does not fit the base model.
    """
    from refine.encoder import load_classifier

    meta = read_classifier_meta(folder)
    state = read_head_state(folder)
    model, tokenizer = load_classifier(meta.model_name_or_path, trust_remote_code=meta.trust_remote_code)
    result = model.load_state_dict(state, strict=False)
    if result.unexpected_keys:
        raise ValueError(f"{folder}: head parameters {result.unexpected_keys[:3]} do not exist in {meta.model_name_or_path}.")
    own = set(model.state_dict())
    missing = [k for k in state if k not in own]
    if missing:
        raise ValueError(f"{folder}: head parameters {missing[:3]} do not fit {meta.model_name_or_path}.")
    model.eval()
    return model, tokenizer, meta
