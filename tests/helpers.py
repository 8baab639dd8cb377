"""Helpers shared by test modules of several packages (fixtures live in the conftest files)."""

from __future__ import annotations

from contextlib import contextmanager

import numpy as np
import torch


@contextmanager
def single_torch_thread():
    """Run tiny models on one thread: on the shared 2-core machine two OpenMP threads spin-wait against other jobs
    (a tiny BERT forward pass takes ~0.5 s instead of ~5 ms), and one thread gives every process the same kernels."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def plain_hf_logits(folder, texts: list[str], *, max_length: int, batch_size: int) -> np.ndarray:
    """First logit of a saved sequence classifier through nothing but transformers, padded per batch."""
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    model = AutoModelForSequenceClassification.from_pretrained(folder).eval()
    tokenizer = AutoTokenizer.from_pretrained(folder)
    out = []
    with torch.no_grad():
        for start in range(0, len(texts), batch_size):
            batch = tokenizer(texts[start : start + batch_size], truncation=True, max_length=max_length, padding=True,
                              return_tensors="pt")
            out.append(model(**batch).logits[:, 0].numpy())
    return np.concatenate(out).astype(np.float64)
