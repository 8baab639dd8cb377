"""Fixtures for end-to-end refine runs: a small synthetic corpus and a config on the tiny BERT."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

UNSAFE_WORDS = ["kill", "hate", "attack", "stab", "threaten", "burn", "hurt", "destroy"]
SAFE_WORDS = ["bake", "garden", "paint", "sing", "visit", "read", "cook", "plant"]
OBJECTS = ["the neighbours", "my cousin", "the teacher", "the village", "his friends", "the cat"]


def make_corpus(n: int = 240, *, seed: int = 0, flip_unsafe: float = 0.3, flip_safe: float = 0.1) -> pd.DataFrame:
    """Short texts whose verb decides the gold label, and an `llm` column with class-conditional noise."""
    rng = np.random.default_rng(seed)
    gold = (rng.random(n) < 0.4).astype(int)
    words = [rng.choice(UNSAFE_WORDS if g else SAFE_WORDS) for g in gold]
    texts = [f"I want to {w} {rng.choice(OBJECTS)} tomorrow" for w in words]
    flips = np.where(gold == 1, rng.random(n) < flip_unsafe, rng.random(n) < flip_safe)
    return pd.DataFrame({"text": texts, "label": gold, "llm": np.where(flips, 1 - gold, gold)})


@pytest.fixture
def corpus_csv(tmp_path):
    path = tmp_path / "corpus.csv"
    make_corpus().to_csv(path, index=False)
    return path


@pytest.fixture
def refine_args(tmp_path, corpus_csv):
    """Command-line style overrides for a fast refine run: 2 iterations on the packaged MiniLM.

    A tiny random BERT is no use here: its [CLS] features barely vary between texts (std ~0.002), so no head can
    learn from them. MiniLM encodes the 240 short texts in about a second.
    """
    return [
        "--output_dir", str(tmp_path / "run"),
        "--data.path", str(corpus_csv), "--data.text_column", "text", "--data.label_columns", "[label]",
        "--data.num_labeled", "30", "--data.test_fraction", "0.25",
        "--annotator.kind", "column", "--annotator.column", "llm",
        "--classifier.model_name_or_path", "minilm", "--classifier.max_length", "16",
        "--train.num_train_epochs", "20", "--train.learning_rate", "0.01", "--train.batch_size", "32",
        "--loop.iterations", "2",
    ]
