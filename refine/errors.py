"""The one-line error texts that the CLIs print and the loaders raise."""

from __future__ import annotations

import os


def one_line(err: BaseException, limit: int | None = None) -> str:
    """``err``'s message on one line (its type name if empty), cut to ``limit`` characters."""
    text = " ".join(str(err).split()) or type(err).__name__
    return text if limit is None or len(text) <= limit else text[: limit - 1] + "…"


def damaged_folder(folder: str | os.PathLike, err: BaseException, *, rerun: str) -> ValueError:
    """The error for a damaged file in a finished iteration or stage folder.

    Such a folder is skipped on rerun (its marker file says it is finished), so deleting only the damaged file would
    not help: the message names the folder to delete, then ``rerun`` (how to recompute it).
    """
    return ValueError(f"finished {folder} is damaged ({one_line(err, 200)}); delete the folder {folder} and {rerun}.")
