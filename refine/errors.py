"""silr's error type and the one-line error texts that the CLIs print and the loaders raise.

Imported by every CLI before it parses its arguments, so it imports nothing heavy: torch and safetensors are imported
inside :func:`naming_weight_errors`, where a model is being loaded anyway.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator


class SilrError(ValueError):
    """An error silr raises on purpose: its one-line message names what is wrong, the value seen and the fix.

    A ``ValueError`` subclass, so ``except ValueError`` (and the CLIs, which print such errors as one line) catch it.
    """


def one_line(err: BaseException, limit: int | None = None) -> str:
    """``err``'s message on one line (its type name if empty), cut to ``limit`` characters."""
    text = " ".join(str(err).split()) or type(err).__name__
    return text if limit is None or len(text) <= limit else text[: limit - 1] + "…"


def damaged_folder(folder: str | os.PathLike, err: BaseException, *, rerun: str) -> SilrError:
    """The error for a damaged file in a finished iteration or stage folder.

    Such a folder is skipped on rerun (its marker file says it is finished), so deleting only the damaged file would
    not help: the message names the folder to delete, then ``rerun`` (how to recompute it).
    """
    return SilrError(f"finished {folder} is damaged ({one_line(err, 200)}); delete the folder {folder} and {rerun}.")


@contextlib.contextmanager
def naming_weight_errors(folder: str | os.PathLike, fix: str) -> Iterator[None]:
    """Turn a weights file that cannot be loaded from ``folder`` into a one-line error naming it and ``fix``.

    A truncated or garbled safetensors file raises SafetensorError; tensors that do not fit the config raise
    RuntimeError. Running out of memory is not the folder's fault and is raised unchanged.

    Raises:
        SilrError: For a weights file that cannot be loaded.
    """
    import torch
    from safetensors import SafetensorError

    try:
        yield
    except (SafetensorError, RuntimeError) as err:
        if isinstance(err, torch.OutOfMemoryError) or "memory" in str(err).lower():
            raise
        raise SilrError(f"cannot load the weights in {folder} ({type(err).__name__}: {one_line(err, 300)}); {fix}") from err
