"""The classifier's base model, and its frozen features computed once per corpus and cached.

Features are computed with dynamic padding over length-sorted batches (no padding to a fixed length) and stored as
safetensors under a key derived from the model files, ``max_length`` and the exact texts, so any run on the same corpus
and encoder reuses them.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from refine.heads import backbone_outputs, head_family
from refine.packaged_models import locate_model
from refine.rundir import atomic_path

logger = logging.getLogger(__name__)


@dataclass
class Features:
    """Frozen features of every corpus text, rows in corpus order."""

    head_input: torch.Tensor  # (N, hidden): what the classifier's head reads
    mean: torch.Tensor  # (N, hidden): attention-masked mean of the last hidden states (sentence embedding)


def load_classifier(model_name_or_path: str, *, trust_remote_code: bool = False):
    """Load ``AutoModelForSequenceClassification`` with one logit, and its tokenizer (safetensors only).

    A decoder without a pad token gets its EOS token as pad, as transformers' sequence classifiers expect.
    """
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    location = locate_model(model_name_or_path)
    tokenizer = AutoTokenizer.from_pretrained(location.path, trust_remote_code=trust_remote_code)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    model = AutoModelForSequenceClassification.from_pretrained(
        location.path, num_labels=1, use_safetensors=True, trust_remote_code=trust_remote_code
    )
    if model.config.pad_token_id is None:
        model.config.pad_token_id = tokenizer.pad_token_id
    model.eval()
    head_family(model)  # fail early on an unsupported architecture
    return model, tokenizer


def _model_fingerprint(path: str) -> str:
    """Cheap identity of a model folder: names, sizes and mtimes of its files (or the Hub id itself)."""
    folder = Path(path)
    if not folder.is_dir():
        return path
    entries = sorted((p.name, p.stat().st_size, int(p.stat().st_mtime)) for p in folder.iterdir() if p.is_file())
    return json.dumps([str(folder.resolve()), entries])


def features_key(model_name_or_path: str, texts: list[str], max_length: int) -> str:
    digest = hashlib.sha256()
    digest.update(_model_fingerprint(locate_model(model_name_or_path).path).encode())
    digest.update(f"|max_length={max_length}|n={len(texts)}|".encode())
    for text in texts:
        digest.update(text.encode("utf-8", "surrogatepass"))
        digest.update(b"\x00")
    return digest.hexdigest()[:24]


def length_sorted_batches(lengths: list[int], batch_size: int) -> list[np.ndarray]:
    """Indices grouped into batches of similar length (longest first), so dynamic padding wastes little."""
    order = np.argsort(-np.asarray(lengths), kind="stable")
    return [order[i : i + batch_size] for i in range(0, len(order), batch_size)]


@torch.inference_mode()
def encode_texts(model, tokenizer, texts: list[str], *, max_length: int, batch_size: int) -> Features:
    """Compute :class:`Features` for ``texts`` with dynamic padding over length-sorted batches."""
    encoded = tokenizer(texts, truncation=True, max_length=max_length)
    lengths = [len(ids) for ids in encoded["input_ids"]]
    hidden = model.config.hidden_size
    head_input = torch.empty(len(texts), hidden)
    mean = torch.empty(len(texts), hidden)
    start = time.perf_counter()
    for batch_idx in tqdm(length_sorted_batches(lengths, batch_size), desc="encoding texts", unit="batch"):
        rows = [{k: encoded[k][i] for k in encoded} for i in batch_idx]
        batch = tokenizer.pad(rows, return_tensors="pt")
        head_part, mean_part = backbone_outputs(model, batch)
        head_input[batch_idx] = head_part.float()
        mean[batch_idx] = mean_part.float()
    seconds = time.perf_counter() - start
    logger.info("encoded %d texts in %.1fs (%.0f texts/s)", len(texts), seconds, len(texts) / max(seconds, 1e-9))
    return Features(head_input=head_input, mean=mean)


def cached_features(
    model, tokenizer, texts: list[str], *, model_name_or_path: str, max_length: int, batch_size: int, cache_dir: str
) -> Features:
    """Features of ``texts``, read from ``cache_dir`` when present, else computed and written atomically.

    Raises:
        ValueError: If a cache file exists but cannot be read or does not match the corpus (names the file to delete).
    """
    from safetensors.torch import load_file, save_file

    path = Path(cache_dir) / f"features-{features_key(model_name_or_path, texts, max_length)}.safetensors"
    if path.exists():
        try:
            tensors = load_file(path)
            features = Features(head_input=tensors["head_input"], mean=tensors["mean"])
        except Exception as err:
            raise ValueError(f"feature cache {path} is corrupt ({type(err).__name__}); delete it and rerun.") from err
        expected = (len(texts), model.config.hidden_size)
        if tuple(features.head_input.shape) != expected or tuple(features.mean.shape) != expected:
            raise ValueError(
                f"feature cache {path} has shape {tuple(features.head_input.shape)}, expected {expected}; "
                "delete it and rerun."
            )
        logger.info("read cached features of %d texts from %s", len(texts), path)
        return features
    features = encode_texts(model, tokenizer, texts, max_length=max_length, batch_size=batch_size)
    os.makedirs(cache_dir, exist_ok=True)
    with atomic_path(path) as tmp:
        save_file({"head_input": features.head_input, "mean": features.mean}, str(tmp))
    return features
