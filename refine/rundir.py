"""Run directory: atomic writes, per-stage config fingerprints, and refusal to mix results of different configs.

Every file is written to a temporary name beside its target and renamed when complete, so an interrupted run leaves
either the old file or the new one, never half of one. Each stage folder holds ``stage.json`` with the part of the
config that determines its results; a rerun with the same part resumes, a changed part is refused unless the user asks
to start over (``overwrite_output_dir``), in which case only that silr-made stage folder is replaced.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import secrets
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml

STAGE_FILE = "stage.json"


class RunConflictError(ValueError):
    """The run directory holds results made with a different config."""


def _temporary_name(target: Path) -> Path:
    """A fresh hidden name beside ``target`` (same file system, so the final ``os.replace`` is atomic)."""
    return target.parent / f".{target.name}.{secrets.token_hex(6)}.tmp"


@contextlib.contextmanager
def atomic_path(target: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``target``; rename it onto ``target`` only if the block succeeds."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp_path = _temporary_name(target)
    # Created with open() so the file gets the usual 0666 & ~umask; mkstemp's 0600 would survive the rename and hide
    # the results from other users of a shared run directory.
    tmp_path.open("x").close()
    try:
        yield tmp_path
        os.replace(tmp_path, target)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


@contextlib.contextmanager
def atomic_dir(target: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary folder beside ``target``; it becomes ``target`` only if the block succeeds."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = _temporary_name(target)
    tmp.mkdir()  # 0777 & ~umask, like any folder; mkdtemp's 0700 would survive the rename
    try:
        yield tmp
        if target.exists():
            shutil.rmtree(target)
        os.replace(tmp, target)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)


def _json_default(value: Any) -> Any:
    """numpy and torch scalars and arrays as Python values: np.int64(3) stays 3 and np.bool_(True) stays true."""
    if hasattr(value, "tolist"):
        return value.tolist()
    return float(value)


def write_json(path: str | os.PathLike, data: Any) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(data, indent=2, sort_keys=True, default=_json_default) + "\n")


def write_text(path: str | os.PathLike, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def write_yaml(path: str | os.PathLike, data: Any) -> None:
    write_text(path, yaml.safe_dump(data, sort_keys=False))


def write_parquet(path: str | os.PathLike, frame) -> None:
    with atomic_path(path) as tmp:
        frame.to_parquet(tmp, index=False)


def read_json(path: str | os.PathLike) -> Any:
    """Read JSON; a corrupt file raises ValueError naming the file and the fix."""
    try:
        return json.loads(Path(path).read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ValueError(f"{path} is corrupt ({err.__class__.__name__}); delete it and rerun.") from err


def read_parquet(path: str | os.PathLike):
    import pandas as pd

    if not Path(path).is_file():
        raise FileNotFoundError(f"{path} not found; rerun the stage that writes it.")
    try:
        return pd.read_parquet(path)
    except Exception as err:  # pyarrow raises several types for damaged files
        raise ValueError(f"{path} is corrupt ({err.__class__.__name__}); delete it and rerun.") from err


def fingerprint(data: dict) -> str:
    return hashlib.sha256(json.dumps(data, sort_keys=True, default=str).encode()).hexdigest()[:16]


def _flatten(data: dict, prefix: str = "") -> dict[str, Any]:
    flat = {}
    for key, value in data.items():
        if isinstance(value, dict):
            flat.update(_flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def describe_difference(old: dict, new: dict, limit: int = 3) -> str:
    """``train.loss: pn → robust_uu, ...`` for the first ``limit`` differing keys."""
    old_flat, new_flat = _flatten(old), _flatten(new)
    keys = sorted(k for k in set(old_flat) | set(new_flat) if old_flat.get(k) != new_flat.get(k))
    shown = [f"{k}: {old_flat.get(k)!r} → {new_flat.get(k)!r}" for k in keys[:limit]]
    more = f" (+{len(keys) - limit} more)" if len(keys) > limit else ""
    return ", ".join(shown) + more


class RunDir:
    """A run directory ``runs/<name>`` with one folder per stage."""

    def __init__(self, root: str | os.PathLike):
        self.root = Path(root)

    def stage(self, name: str) -> Path:
        return self.root / name

    def check_stage(self, name: str, config: dict, *, overwrite: bool) -> bool:
        """Whether stage ``name`` already holds results of ``config`` (True), or is empty / to be replaced (False).

        Writes nothing, so a run can refuse a conflict before it does any work.

        Raises:
            RunConflictError: If the stage holds results of another config and ``overwrite`` is False, or the folder
                exists but was not made by silr.
        """
        folder = self.stage(name)
        marker = folder / STAGE_FILE
        if marker.exists():
            try:
                recorded = read_json(marker)
            except ValueError:
                recorded = None
            if not isinstance(recorded, dict):
                raise ValueError(f"{marker} is unreadable, so the results in {folder} cannot be matched to a config; "
                                 f"delete the folder {folder} and rerun (that stage is recomputed).")
            if recorded.get("fingerprint") == fingerprint(config):
                return True
            if not overwrite:
                raise RunConflictError(
                    f"{folder} holds results of a different config ({describe_difference(recorded.get('config', {}), config)}); "
                    "use a new run name, or pass --overwrite_output_dir to start this stage over."
                )
        elif folder.exists() and any(folder.iterdir()):
            # Never delete a folder silr did not make, even when asked to start over.
            raise RunConflictError(f"{folder} exists and was not made by silr; choose another output_dir.")
        return False

    def claim_stage(self, name: str, config: dict, *, overwrite: bool) -> Path:
        """Check (see :meth:`check_stage`) and record that stage ``name`` is made from ``config``.

        A silr-made stage of another config is replaced when ``overwrite`` is True. Returns the stage folder.
        """
        folder = self.stage(name)
        if self.check_stage(name, config, overwrite=overwrite):
            return folder
        if (folder / STAGE_FILE).exists():
            shutil.rmtree(folder)
        folder.mkdir(parents=True, exist_ok=True)
        write_json(folder / STAGE_FILE, {"fingerprint": fingerprint(config), "config": config})
        return folder
