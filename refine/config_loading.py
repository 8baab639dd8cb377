"""Nested dataclass configs from YAML plus ``--section.key value`` command-line overrides (TRL style).

The YAML is the whole surface: every key must name a dataclass field, and every unknown key is reported at once with
the closest valid name. Values given on the command line are parsed as YAML scalars (``3``, ``0.1``, ``true``,
``null``, ``[a, b]``) and override the file. ``${data_dir}`` in string values expands to the data directory.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import os
import types
import typing
from pathlib import Path
from typing import Any, Literal, TypeVar, get_args, get_origin

import yaml

from refine.errors import SilrError

T = TypeVar("T")

DATA_DIR_ENV = "SILR_DATA_DIR"
DEFAULT_DATA_DIR = "../shared/data"


class ConfigError(SilrError):
    """A config file or override names an unknown key or holds a value of the wrong type."""


def data_dir() -> str:
    """The data directory: ``$SILR_DATA_DIR`` if set, else ``../shared/data`` (relative to the working directory)."""
    return os.environ.get(DATA_DIR_ENV, DEFAULT_DATA_DIR)


def _expand(value: Any) -> Any:
    if isinstance(value, str):
        return value.replace("${data_dir}", data_dir())
    if isinstance(value, list):
        return [_expand(v) for v in value]
    return value


def _field_types(cls: type) -> dict[str, Any]:
    hints = typing.get_type_hints(cls)
    return {f.name: hints[f.name] for f in dataclasses.fields(cls) if f.init}


def _strip_optional(tp: Any) -> tuple[Any, bool]:
    if get_origin(tp) in (typing.Union, types.UnionType):
        args = [a for a in get_args(tp) if a is not type(None)]
        if len(args) == 1:
            return args[0], True
    return tp, False


def _float_or_none(text: str) -> float | None:
    try:
        number = float(text)
    except ValueError:
        return None
    return number if math.isfinite(number) else None


def _coerce(value: Any, tp: Any, key: str) -> Any:
    """Check (and gently convert) a YAML value to the annotated type; raises ConfigError naming the key."""
    inner, optional = _strip_optional(tp)
    original = value
    if value is None:
        if optional:
            return None
        raise ConfigError(f"{key} may not be null.")
    if dataclasses.is_dataclass(inner):
        if not isinstance(value, dict):
            raise ConfigError(f"{key} must be a mapping of {inner.__name__} fields, got {type(value).__name__}.")
        return _build(inner, value, prefix=f"{key}.")
    origin = get_origin(inner)
    if origin is Literal:
        choices = get_args(inner)
        if value not in choices:
            raise ConfigError(f"{key}={value!r} is not one of {', '.join(map(repr, choices))}.")
        return value
    if origin in (list, tuple):
        if isinstance(value, (str, int, float)):
            value = [value]
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{key} must be a list, got {type(value).__name__}.")
        (item_tp, *_) = get_args(inner) or (Any,)
        return [_coerce(v, item_tp, f"{key}[{i}]") for i, v in enumerate(value)]
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{key} must be a mapping, got {type(value).__name__}.")
        return dict(value)
    if inner is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{key} must be true or false, got {value!r}.")
        return value
    if inner is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{key} must be an integer, got {value!r}.")
        return value
    if inner is float:
        if isinstance(value, str):
            # PyYAML follows YAML 1.1, which reads 1e-4 (no dot) as a string; accept it as the number it spells.
            value = _float_or_none(value)
        if value is None or isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{key} must be a number, got {original!r}.")
        if not math.isfinite(value):  # .nan / .inf: no setting here means anything with them
            raise ConfigError(f"{key} must be a finite number, got {original!r}.")
        return float(value)
    if inner is str:
        if isinstance(value, (dict, list)):
            raise ConfigError(f"{key} must be a string, got {type(value).__name__}.")
        return _expand(str(value))
    return _expand(value)


def _unknown_key_messages(cls: type, data: dict, prefix: str) -> list[str]:
    names = list(_field_types(cls))
    messages = []
    for key in data:
        if key not in names:
            close = difflib.get_close_matches(str(key), names, n=1)
            hint = f" (did you mean {prefix}{close[0]}?)" if close else f" (valid: {', '.join(names)})"
            messages.append(f"unknown key {prefix}{key}{hint}")
    types_ = _field_types(cls)
    for key, value in data.items():
        inner, _ = _strip_optional(types_.get(key, None))
        if key in names and dataclasses.is_dataclass(inner) and isinstance(value, dict):
            messages += _unknown_key_messages(inner, value, f"{prefix}{key}.")
    return messages


def _build(cls: type[T], data: dict, prefix: str = "") -> T:
    kwargs = {name: _coerce(data[name], tp, f"{prefix}{name}") for name, tp in _field_types(cls).items() if name in data}
    try:
        return cls(**kwargs)
    except (ValueError, TypeError) as err:
        if isinstance(err, ConfigError):
            raise
        raise ConfigError(f"{prefix.rstrip('.') or cls.__name__}: {err}") from err


def config_from_dict(cls: type[T], data: dict) -> T:
    """Build a (nested) dataclass config from a mapping; all unknown keys are reported together."""
    if not isinstance(data, dict):
        raise ConfigError(f"a config must be a mapping of keys to values, got {type(data).__name__}.")
    unknown = _unknown_key_messages(cls, data, "")
    if unknown:
        raise ConfigError("; ".join(unknown))
    return _build(cls, data)


def _parse_value(key: str, raw: str) -> Any:
    """A command-line value read as YAML; text YAML cannot read, or reads as ``key: value``, stays a string.

    So ``--data.template "User: {prompt} Assistant: {response}"`` gives that string, not a YAML error or a mapping.
    A broken list or mapping (``[a, b``) is an error rather than a string.
    """
    if raw == "":
        return ""
    try:
        value = yaml.safe_load(raw)
    except yaml.YAMLError as err:
        if raw.lstrip()[:1] in ("[", "{"):
            reason = str(err).splitlines()[0]
            raise ConfigError(f"--{key}: {raw!r} is not a valid YAML list or mapping: {reason}") from err
        return raw
    if isinstance(value, dict) and not raw.lstrip().startswith("{"):
        return raw
    return value


def parse_overrides(argv: list[str]) -> dict:
    """``["--loop.iterations", "3", "--train.loss=pn"]`` → ``{"loop": {"iterations": 3}, "train": {"loss": "pn"}}``."""
    nested: dict = {}
    i = 0
    while i < len(argv):
        arg = argv[i]
        if not arg.startswith("--"):
            raise ConfigError(f"unexpected argument {arg!r}; overrides look like --section.key value.")
        key, sep, raw = arg[2:].partition("=")
        if not sep:
            if i + 1 >= len(argv) or argv[i + 1].startswith("--"):
                raw = "true"  # a bare flag: --overwrite_output_dir
            else:
                i += 1
                raw = argv[i]
        value = _parse_value(key, raw)
        node = nested
        parts = key.replace("-", "_").split(".")
        for part in parts[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ConfigError(f"--{key}: {part} is a value, not a section.")
        node[parts[-1]] = value
        i += 1
    return nested


def merge(base: dict, override: dict) -> dict:
    """Recursive dict merge; ``override`` wins."""
    out = dict(base)
    for key, value in override.items():
        out[key] = merge(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out


def read_yaml(path: str | os.PathLike) -> dict:
    """Read a YAML mapping; a missing file or a non-mapping raises with the path in the message."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"config file {path} not found; pass an existing YAML file to --config.")
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as err:
        raise ConfigError(f"{path} is not valid YAML: {str(err).splitlines()[0]}") from err
    if data is None:  # an empty file (or only comments): all defaults
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path} must hold a mapping of keys to values, got {type(data).__name__}.")
    return data


def load_config(cls: type[T], path: str | os.PathLike | None, overrides: list[str] | None = None) -> T:
    """Load ``cls`` from a YAML file (optional) with command-line overrides applied on top."""
    data = read_yaml(path) if path is not None else {}
    return config_from_dict(cls, merge(data, parse_overrides(overrides or [])))


def config_to_dict(config: Any) -> dict:
    """A plain mapping of the resolved config (for ``config.yaml`` in the run directory)."""
    return dataclasses.asdict(config)


def describe_fields(cls: type, prefix: str = "") -> list[tuple[str, Any, str]]:
    """``(--key, default, help)`` for every leaf field, for ``--help``."""
    rows = []
    for f in dataclasses.fields(cls):
        tp, _ = _strip_optional(_field_types(cls)[f.name])
        if dataclasses.is_dataclass(tp):
            rows += describe_fields(tp, f"{prefix}{f.name}.")
        else:
            default = f.default if f.default is not dataclasses.MISSING else (
                f.default_factory() if f.default_factory is not dataclasses.MISSING else None  # type: ignore[misc]
            )
            rows.append((f"--{prefix}{f.name}", default, f.metadata.get("help", "")))
    return rows
