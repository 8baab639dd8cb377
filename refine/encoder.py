"""The classifier's base model, and its frozen features computed once per corpus and cached.

Features are computed with dynamic padding over length-sorted batches (no padding to a fixed length) and stored as
safetensors under a key derived from the model files, ``max_length`` and the exact texts, so any run on the same corpus
and encoder reuses them. Under a multi-process launch the batches are shared out between the processes and the rows
gathered back (:mod:`refine.distributed`); only the main process writes the cache.
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

from refine import distributed
from refine.errors import naming_weight_errors
from refine.heads import backbone_outputs, head_family
from refine.packaged_models import locate_model
from refine.rundir import atomic_path
from refine.transformers_setup import load_classifier_tokenizer

logger = logging.getLogger(__name__)


@dataclass
class Features:
    """Frozen features of every corpus text, rows in corpus order."""

    head_input: torch.Tensor  # (N, hidden): what the classifier's head reads
    mean: torch.Tensor  # (N, hidden): attention-masked mean of the last hidden states (sentence embedding)


def load_classifier(model_name_or_path: str, *, trust_remote_code: bool = False,
                    setting: str = "classifier.model_name_or_path"):
    """Load ``AutoModelForSequenceClassification`` with one logit, and its tokenizer (safetensors only).

    The tokenizer pads and truncates on the right, with EOS as pad token when it has none
    (:func:`refine.transformers_setup.load_classifier_tokenizer`). ``setting`` is the config key named when
    ``model_name_or_path`` is a folder that does not exist.
    """
    from transformers import AutoModelForSequenceClassification

    location = locate_model(model_name_or_path, setting=setting)
    tokenizer = load_classifier_tokenizer(location.path, trust_remote_code=trust_remote_code)
    with naming_weight_errors(location.path, "point classifier.model_name_or_path at a complete model folder."):
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


def _my_batches(tokenizer, texts: list[str], *, max_length: int, batch_size: int, across_processes: bool):
    """Tokenized texts (no padding) and this process's share of their length-sorted batches."""
    encoded = tokenizer(texts, truncation=True, max_length=max_length)
    batches = length_sorted_batches([len(ids) for ids in encoded["input_ids"]], batch_size)
    return encoded, (distributed.shard(batches) if across_processes else batches)


def _padded(tokenizer, encoded, batch_idx: np.ndarray, device: torch.device) -> dict[str, torch.Tensor]:
    rows = [{k: encoded[k][i] for k in encoded} for i in batch_idx]
    return {k: v.to(device) for k, v in tokenizer.pad(rows, return_tensors="pt").items()}


@torch.inference_mode()
def encode_texts(
    model, tokenizer, texts: list[str], *, max_length: int, batch_size: int, across_processes: bool = False
) -> Features:
    """Compute :class:`Features` for ``texts`` with dynamic padding over length-sorted batches.

    Args:
        model: The base classifier (see :func:`load_classifier`), on any device.
        tokenizer: Its tokenizer.
        texts: The texts, shape ``(N,)``.
        max_length: Tokens per text; longer texts are truncated.
        batch_size: Texts per forward pass.
        across_processes: Share the batches out between the processes of a multi-process launch and gather the
            rows back (every process must call it). False: this process encodes every text.

    Returns:
        Features in the order of ``texts``, float32 on the CPU (identical on every process).
    """
    encoded, batches = _my_batches(tokenizer, texts, max_length=max_length, batch_size=batch_size,
                                   across_processes=across_processes)
    hidden = model.config.hidden_size
    device = next(model.parameters()).device
    rows = np.concatenate(batches) if batches else np.empty(0, dtype=np.int64)
    head_input, mean = torch.empty(len(rows), hidden), torch.empty(len(rows), hidden)
    start, done = time.perf_counter(), 0
    for batch_idx in tqdm(batches, desc="encoding texts", unit="batch", total=len(batches),
                          disable=not distributed.is_main_process()):
        head_part, mean_part = backbone_outputs(model, _padded(tokenizer, encoded, batch_idx, device))
        head_input[done : done + len(batch_idx)] = head_part.float().cpu()
        mean[done : done + len(batch_idx)] = mean_part.float().cpu()
        done += len(batch_idx)
    if across_processes:
        both = distributed.gather_rows(rows, torch.cat([head_input, mean], dim=1), len(texts))
        head_input, mean = both[:, :hidden].contiguous(), both[:, hidden:].contiguous()
    else:
        order = np.argsort(rows)
        head_input, mean = head_input[order], mean[order]
    seconds = time.perf_counter() - start
    logger.info("encoded %d texts in %.1fs (%.0f texts/s)", len(texts), seconds, len(texts) / max(seconds, 1e-9))
    return Features(head_input=head_input, mean=mean)


@torch.inference_mode()
def predict_unsafe_logits(
    model, tokenizer, texts: list[str], *, max_length: int, batch_size: int, across_processes: bool = False
) -> np.ndarray:
    """``unsafe_logit`` of a full sequence classifier (one logit) for every text, in the order of ``texts``.

    Dynamic padding over length-sorted batches, as :func:`encode_texts`; the model runs in eval mode on its device
    and dtype. With ``across_processes`` the batches are shared out and the logits gathered (every process calls).

    Returns:
        Shape ``(N,)``, float64, identical on every process.
    """
    encoded, batches = _my_batches(tokenizer, texts, max_length=max_length, batch_size=batch_size,
                                   across_processes=across_processes)
    model.eval()
    device = next(model.parameters()).device
    rows = np.concatenate(batches) if batches else np.empty(0, dtype=np.int64)
    logits = torch.empty(len(rows), dtype=torch.float64)
    done = 0
    for batch_idx in tqdm(batches, desc="relabelling", unit="batch", total=len(batches),
                          disable=not distributed.is_main_process()):
        output = model(**_padded(tokenizer, encoded, batch_idx, device)).logits
        logits[done : done + len(batch_idx)] = output[:, 0].double().cpu()
        done += len(batch_idx)
    if across_processes:
        return distributed.gather_rows(rows, logits, len(texts)).numpy()
    out = torch.empty(len(texts), dtype=torch.float64)
    out[torch.as_tensor(rows, dtype=torch.long)] = logits
    return out.numpy()


def cached_features(
    model, tokenizer, texts: list[str], *, model_name_or_path: str, max_length: int, batch_size: int, cache_dir: str
) -> Features:
    """Features of ``texts``, read from ``cache_dir`` when present, else computed and written atomically.

    Under a multi-process launch every process calls this: they share the encoding, and the main process writes.

    Raises:
        ValueError: If a cache file exists but cannot be read or does not match the corpus (names the file to delete).
    """
    from safetensors.torch import load_file, save_file

    path = Path(cache_dir) / f"features-{features_key(model_name_or_path, texts, max_length)}.safetensors"
    cached = distributed.exists_on_main(path)
    if cached:
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
    features = encode_texts(model, tokenizer, texts, max_length=max_length, batch_size=batch_size,
                            across_processes=True)
    if distributed.is_main_process():
        os.makedirs(cache_dir, exist_ok=True)
        with atomic_path(path) as tmp:
            save_file({"head_input": features.head_input, "mean": features.mean}, str(tmp))
    distributed.wait_for_everyone()
    return features
