"""Run directory: atomic writes, per-stage config fingerprints, and refusal to mix results of different configs.

Every file is written to a temporary name beside its target and renamed when complete, so an interrupted run leaves
either the old file or the new one, never half of one. Each stage folder holds ``stage.json`` with the part of the
config that determines its results; a rerun with the same part resumes, a changed part is refused unless the user asks
to start over (``overwrite_output_dir``), in which case only that silr-made stage folder is replaced.

A temporary is named ``.<target name>.<hex>.tmp``; its 18 hex digits hold a key of the host name, the writer's
process id and a random part. A process killed mid-write (kill -9, power loss) leaves it behind. The next write of the
same target removes such leftovers whose writer is gone (:func:`remove_stale_temporaries`), and so does claiming a
stage (:meth:`RunDir.claim_stage`), for the run folder and the stage folder; nothing else is ever removed.

Everything written gets the usual permissions, ``0o666 & ~umask`` for files and ``0o777 & ~umask`` for folders, even
when the library that wrote it (safetensors, for one) chose a private ``0o600``: a shared run or model folder stays
readable by the team.

Configs are written without credentials: ``user:password@`` in a URL becomes ``***@`` (:mod:`refine.redact`).
"""

from __future__ import annotations

import contextlib
import glob
import gzip
import hashlib
import json
import logging
import os
import re
import secrets
import shutil
import socket
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml

from refine.errors import SilrError, damaged_folder
from refine.redact import redact_config

logger = logging.getLogger(__name__)

STAGE_FILE = "stage.json"

# .<name>.<hex>.tmp with 18 hex digits (host key 4, process id 8, random 6); earlier versions wrote 12 random ones.
_TEMPORARY = re.compile(r"\.(?P<name>.+)\.(?P<key>[0-9a-f]{18}|[0-9a-f]{12})\.tmp")
_HOST_KEY = hashlib.sha256(socket.gethostname().encode()).hexdigest()[:4]


class RunConflictError(SilrError):
    """The run directory holds results made with a different config."""


def _temporary_name(target: Path) -> Path:
    """A fresh hidden name beside ``target`` (same file system, so the final ``os.replace`` is atomic)."""
    return target.parent / f".{target.name}.{_HOST_KEY}{os.getpid():08x}{secrets.token_hex(3)}.tmp"


def _writer_is_gone(key: str) -> bool:
    """Whether the process that named a temporary with ``key`` has exited (True for the old keyless names).

    A writer on another host cannot be checked from here, so its temporaries are kept.
    """
    if len(key) != 18:
        return True
    if key[:4] != _HOST_KEY:
        return False
    pid = int(key[4:12], 16)
    if pid == os.getpid() or os.name == "nt":  # on Windows os.kill(pid, 0) would end the process, not probe it
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except (PermissionError, OverflowError):  # another user's live process, or not a pid: keep
        return False
    return False


def remove_stale_temporaries(folder: str | os.PathLike, name: str | None = None) -> list[Path]:
    """Remove the leftovers of silr's interrupted atomic writes in ``folder`` (not its subfolders).

    Only entries named like silr's temporaries (``.<name>.<hex>.tmp``) whose writer process has exited are removed;
    with ``name``, only the temporaries of that target. Returns what was removed.
    """
    folder = Path(folder)
    removed = []
    if not folder.is_dir():
        return removed
    # With a name, only its temporaries are listed: a folder of many chunks is not scanned at every write.
    entries = folder.glob(glob.escape(f".{name}.") + "*.tmp") if name is not None else folder.iterdir()
    for entry in list(entries):
        match = _TEMPORARY.fullmatch(entry.name)
        if match is None or (name is not None and match.group("name") != name) or not _writer_is_gone(match["key"]):
            continue
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry, ignore_errors=True)
        else:
            entry.unlink(missing_ok=True)
        removed.append(entry)
    return removed


def _umask() -> int:
    """The process umask, read without changing it where Linux reports it (os.umask would, for every thread)."""
    with contextlib.suppress(OSError, ValueError):
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _give_usual_mode(path: Path) -> None:
    """``0o666 & ~umask`` for a file (execute bits kept), ``0o777 & ~umask`` for a folder and what it holds."""
    umask = _umask()
    paths = [path, *path.rglob("*")] if path.is_dir() else [path]
    for item in paths:
        if item.is_symlink():
            continue
        mode = item.stat().st_mode
        if stat.S_ISDIR(mode):
            item.chmod(0o777 & ~umask)
        else:
            item.chmod((0o777 if mode & 0o100 else 0o666) & ~umask)


@contextlib.contextmanager
def atomic_path(target: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``target``; rename it onto ``target`` only if the block succeeds.

    Stale temporaries of ``target`` left by a killed writer are removed first.
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temporaries(target.parent, target.name)
    tmp_path = _temporary_name(target)
    tmp_path.open("x").close()
    try:
        yield tmp_path
        # Whatever wrote the file (safetensors writes 0o600) it gets the usual mode; a private 0o600 would survive the
        # rename and hide the results from other users of a shared run directory.
        _give_usual_mode(tmp_path)
        os.replace(tmp_path, target)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


@contextlib.contextmanager
def atomic_dir(target: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary folder beside ``target``; it becomes ``target`` only if the block succeeds.

    Stale temporaries of ``target`` left by a killed writer are removed first.
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temporaries(target.parent, target.name)
    tmp = _temporary_name(target)
    tmp.mkdir()
    try:
        yield tmp
        _give_usual_mode(tmp)  # save_pretrained and safetensors may write 0o600 files (and mkdtemp 0o700 folders)
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
    """Write a config mapping as YAML; URL credentials in its strings are written as ``***@`` (refine.redact)."""
    write_text(path, yaml.safe_dump(redact_config(data), sort_keys=False))


def write_parquet(path: str | os.PathLike, frame) -> None:
    with atomic_path(path) as tmp:
        frame.to_parquet(tmp, index=False)


def read_json(path: str | os.PathLike) -> Any:
    """Read JSON; a corrupt file raises ValueError naming the file and the fix."""
    try:
        return json.loads(Path(path).read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ValueError(f"{path} is corrupt ({err.__class__.__name__}); delete it and rerun.") from err


def read_jsonl(path: str | os.PathLike, *, flag: str | None = None) -> list[dict]:
    """The objects of a JSON Lines file (``.jsonl``, or gzip-compressed ``.jsonl.gz``), blank lines skipped.

    Args:
        path: The file.
        flag: The command-line option that named the file, when it is a user's input: a problem is named with the
            file, the line and the fix. None: the file is silr's own output in a finished stage folder, which a rerun
            skips, so damage names the folder to delete (:func:`refine.errors.damaged_folder`).

    Raises:
        FileNotFoundError: If the file does not exist (naming ``flag`` for a user's file).
        SilrError: If a line is not a JSON object, or the file is not valid UTF-8 (or gzip).
    """
    path = Path(path)
    if flag is not None and not path.is_file():
        raise FileNotFoundError(f"{path} not found; pass an existing JSONL file to {flag}.")

    def damaged(message: str, detail: str) -> SilrError:
        if flag is not None:
            return SilrError(message)
        return damaged_folder(path.parent, ValueError(f"{path.name} is corrupt ({detail})"),
                              rerun="rerun (that stage is recomputed)")

    rows = []
    try:
        with gzip.open(path, "rt", encoding="utf-8") if path.suffix == ".gz" else path.open(encoding="utf-8") as handle:
            for number, line in enumerate(handle, 1):
                if not line.strip():
                    continue
                try:
                    row = json.loads(line)
                except json.JSONDecodeError as err:
                    raise damaged(f"{path}:{number} is not valid JSON ({err.msg}); fix that line.",
                                  type(err).__name__) from err
                if not isinstance(row, dict):
                    kind = f"a JSON {type(row).__name__}, not an object"
                    raise damaged(f"{path}:{number} is {kind}; write one object per line.", f"line {number} is {kind}")
                rows.append(row)
    except (OSError, EOFError, UnicodeDecodeError) as err:  # gzip.BadGzipFile is an OSError
        if flag is None and not isinstance(err, UnicodeDecodeError):
            raise  # silr's own file is missing or cannot be opened: the system's message names it
        raise damaged(f"cannot read {path} ({type(err).__name__}); pass a UTF-8 JSONL file (optionally gzip).",
                      type(err).__name__) from err
    return rows


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

        Writes nothing, so a run can refuse a conflict before it does any work. URL credentials in ``config`` are
        left out of the comparison (see :mod:`refine.redact`): they do not change results, and are never recorded.

        Raises:
            RunConflictError: If the stage holds results of another config and ``overwrite`` is False, or the folder
                exists but was not made by silr.
        """
        config = redact_config(config)
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
                    f"{folder} holds results of a different config "
                    f"({describe_difference(redact_config(recorded.get('config', {})), config)}); "
                    "use a new run name, or pass --overwrite_output_dir to start this stage over."
                )
        elif folder.exists() and any(not _TEMPORARY.fullmatch(p.name) for p in folder.iterdir()):
            # Never delete a folder silr did not make, even when asked to start over.
            raise RunConflictError(f"{folder} exists and was not made by silr; choose another output_dir.")
        return False

    def claim_stage(self, name: str, config: dict, *, overwrite: bool) -> Path:
        """Check (see :meth:`check_stage`) and record that stage ``name`` is made from ``config``.

        A silr-made stage of another config is replaced when ``overwrite`` is True. Leftover temporaries of killed
        writes are removed from the run folder and the stage folder (see :func:`remove_stale_temporaries`). Returns
        the stage folder.
        """
        config = redact_config(config)
        folder = self.stage(name)
        if self.check_stage(name, config, overwrite=overwrite):
            self._remove_stale_temporaries(folder)
            return folder
        if (folder / STAGE_FILE).exists():
            shutil.rmtree(folder)
        folder.mkdir(parents=True, exist_ok=True)
        self._remove_stale_temporaries(folder)
        write_json(folder / STAGE_FILE, {"fingerprint": fingerprint(config), "config": config})
        return folder

    def _remove_stale_temporaries(self, stage_folder: Path) -> None:
        """Leftovers of killed writes in the run folder (``.config.yaml.<hex>.tmp``) and anywhere in the stage."""
        removed = remove_stale_temporaries(self.root)
        for folder in [stage_folder, *(p for p in stage_folder.rglob("*") if p.is_dir() and not p.is_symlink())]:
            removed += remove_stale_temporaries(folder)
        if removed:
            logger.info("removed %d leftover temporaries of an interrupted run: %s", len(removed),
                        ", ".join(str(p) for p in removed[:3]) + (" ..." if len(removed) > 3 else ""))
