"""Save and load a refined classifier: the trained head plus what is needed to rebuild the full model.

Two folder layouts (``refine/iter_<k>/classifier/``), told apart by ``classifier.json``'s ``format``:

``head`` (frozen backbone)::

    head.safetensors    the head's parameters under their names in the full model (e.g. ``classifier.weight``)
    classifier.json     base model, head family, max_length, decision threshold, text template

``model`` (fine-tuned backbone): a standard Hugging Face folder that plain
``AutoModelForSequenceClassification.from_pretrained`` loads::

    config.json, model.safetensors   the whole classifier (LoRA adapters merged), num_labels=1, pad_token_id set
    tokenizer files                   the tokenizer it was trained with
    classifier.json                   as above, with format "model"

:func:`load_refined_classifier` returns the full model either way; its logit is ``unsafe_logit`` (positive means
unsafe) and equals the score computed during refinement.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from refine.encoder import load_classifier
from refine.errors import naming_weight_errors, one_line
from refine.heads import ClassifierHead
from refine.rundir import atomic_dir, read_json, write_json
from refine.transformers_setup import load_classifier_tokenizer

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
    format: str = "head"  # "head": head.safetensors on the base model; "model": a whole fine-tuned model folder


def save_refined_classifier(folder: str | os.PathLike, head: ClassifierHead, meta: ClassifierMeta) -> None:
    """Write ``head.safetensors`` and ``classifier.json`` into ``folder`` atomically."""
    from safetensors.torch import save_file

    with atomic_dir(folder) as tmp:
        save_file(head.model_state_dict(), str(tmp / HEAD_FILE))
        write_json(tmp / META_FILE, asdict(meta))


def save_refined_model(folder: str | os.PathLike, model, tokenizer, meta: ClassifierMeta) -> None:
    """Write a whole fine-tuned classifier (safetensors), its tokenizer and ``classifier.json`` atomically.

    Raises:
        ValueError: If the model does not have exactly one logit or lacks a pad token id.
    """
    if model.config.num_labels != 1 or model.config.pad_token_id is None:
        raise ValueError(
            f"a refined classifier needs num_labels=1 and a pad_token_id (got {model.config.num_labels}, "
            f"{model.config.pad_token_id}); build it with refine.finetune."
        )
    with atomic_dir(folder) as tmp:
        model.save_pretrained(tmp, safe_serialization=True)
        tokenizer.save_pretrained(tmp)
        write_json(tmp / META_FILE, {**asdict(meta), "format": "model"})


def read_classifier_meta(folder: str | os.PathLike) -> ClassifierMeta:
    path = Path(folder) / META_FILE
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found; {folder} is not a refined classifier folder (refine/iter_<k>/classifier).")
    try:
        return ClassifierMeta(**read_json(path))
    except TypeError as err:  # not a mapping, or fields missing / unknown
        raise ValueError(f"{path} is malformed ({one_line(err)}); delete its iteration folder and rerun "
                         "refine (that iteration is recomputed).") from err


def read_head_state(folder: str | os.PathLike) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    path = Path(folder) / HEAD_FILE
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found; rerun the refine iteration that writes it.")
    try:
        return load_file(path)
    except Exception as err:
        raise ValueError(f"{path} is corrupt ({type(err).__name__}); delete the iteration folder and rerun refine.") from err


def load_refined_classifier(folder: str | os.PathLike, *, trust_remote_code: bool = False):
    """The full classifier: ``(model, tokenizer, meta)``, the model in eval mode with the trained head in place.

    Reads either layout (see the module docstring): a head on its base model, or a whole fine-tuned model folder.

    Args:
        folder: A ``refine/iter_<k>/classifier`` folder.
        trust_remote_code: Allow running the Python code of a model trained with ``trust_remote_code`` (its base model
            folder's, or the saved folder's). Only the caller can allow it: ``classifier.json`` says whether the model
            needs it, but a run folder is data, and what it holds never turns code execution on by itself.

    Raises:
        FileNotFoundError: If the folder lacks ``classifier.json``, or the weights its format needs.
        ValueError: If the head does not fit the base model, the saved model is not a one-logit classifier, or the
            model needs remote code that ``trust_remote_code`` does not allow.
    """
    meta = read_classifier_meta(folder)
    if meta.trust_remote_code and not trust_remote_code:
        where = folder if meta.format == "model" else meta.model_name_or_path
        raise ValueError(
            f"{Path(folder) / META_FILE} says this classifier was trained with trust_remote_code, so loading it runs "
            f"the Python code in {where}; a run folder never turns that on by itself. If you trust that code, pass "
            "--trust-remote-code (trust_remote_code=True)."
        )
    if meta.format == "model":
        return _load_model_folder(Path(folder), meta)
    state = read_head_state(folder)
    model, tokenizer = load_classifier(meta.model_name_or_path, trust_remote_code=meta.trust_remote_code,
                                       setting=f"model_name_or_path in {Path(folder) / META_FILE}")
    result = model.load_state_dict(state, strict=False)
    if result.unexpected_keys:
        raise ValueError(f"{folder}: head parameters {result.unexpected_keys[:3]} do not exist in {meta.model_name_or_path}.")
    own = set(model.state_dict())
    missing = [k for k in state if k not in own]
    if missing:
        raise ValueError(f"{folder}: head parameters {missing[:3]} do not fit {meta.model_name_or_path}.")
    model.eval()
    return model, tokenizer, meta


def _load_model_folder(folder: Path, meta: ClassifierMeta):
    from transformers import AutoModelForSequenceClassification

    if not any((folder / name).is_file() for name in ("model.safetensors", "model.safetensors.index.json")):
        raise FileNotFoundError(f"{folder}/model.safetensors not found; rerun the refine iteration that writes it.")
    tokenizer = load_classifier_tokenizer(folder, trust_remote_code=meta.trust_remote_code)
    with naming_weight_errors(folder, "delete its iteration folder and rerun refine (that iteration is recomputed)."):
        model = AutoModelForSequenceClassification.from_pretrained(
            folder, use_safetensors=True, trust_remote_code=meta.trust_remote_code
        )
    if model.config.num_labels != 1:
        raise ValueError(f"{folder} holds a classifier with num_labels={model.config.num_labels}, not 1; rerun refine.")
    model.eval()
    return model, tokenizer, meta


def load_lora_adapters(base, folder: str | os.PathLike):
    """``base`` with the peft LoRA adapters saved in ``folder`` merged in; safetensors only.

    peft would fall back to a pickled ``adapter_model.bin``; silr refuses it, as it refuses any pickle.
    """
    from peft import PeftModel

    if not (Path(folder) / "adapter_model.safetensors").is_file():
        raise ValueError(f"{folder} has adapter_config.json but no adapter_model.safetensors; silr loads safetensors "
                         "only (save the adapters with safe_serialization=True).")
    return PeftModel.from_pretrained(base, str(folder)).merge_and_unload()


def safetensors_readable(path: str | os.PathLike) -> bool:
    """Whether ``path`` is a complete safetensors file (its header is read and checked against its size)."""
    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(str(path), "pt"):
            return True
    except (SafetensorError, OSError):
        return False
