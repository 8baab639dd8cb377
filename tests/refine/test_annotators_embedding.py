"""kind=embedding: zero-shot similarity to class descriptions (tiny random BERT for the plumbing, MiniLM for sense)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from refine.annotators import annotate_corpus
from refine.annotators.embedding import embedding_scores, similarity_scores
from refine.config import AnnotatorConfig
from refine.encoder import encode_texts, load_classifier

TEXTS = [
    "I am going to hurt you badly.",
    "The weather is lovely today.",
    "You people are worthless and should disappear.",
    "Can you recommend a good book about gardening?",
    "Thanks for the help with my homework!",
    "Nobody would miss me if I was gone.",
]


def make_corpus() -> pd.DataFrame:
    n = len(TEXTS)
    return pd.DataFrame({
        "id": np.arange(n), "text": TEXTS, "gold": [1, 0, 1, 0, 0, 1], "split": ["train"] * n, "labeled": [False] * n,
    })


def test_similarity_scores_by_hand():
    texts = torch.tensor([[1.0, 0.0], [0.0, 2.0], [1.0, 1.0]])
    unsafe = torch.tensor([[1.0, 0.0]])
    safe = torch.tensor([[0.0, 1.0], [-1.0, 0.0]])
    # Row 0: cos to unsafe 1, best safe max(0, -1) = 0 → 1. Row 1: 0 - 1 = -1. Row 2: 1/√2 - 1/√2 = 0.
    np.testing.assert_allclose(similarity_scores(texts, unsafe, safe), [1.0, -1.0, 0.0], atol=1e-6)


def test_reusing_classifier_embeddings_equals_loading_the_encoder_by_name(tiny_bert_dir, tmp_path):
    config_reuse = AnnotatorConfig(kind="embedding", threshold="positive_fraction", positive_fraction=0.5)
    encoder = load_classifier(tiny_bert_dir)
    embeddings = encode_texts(*encoder, TEXTS, max_length=config_reuse.max_length, batch_size=config_reuse.batch_size)
    reused = annotate_corpus(
        make_corpus(), config_reuse, tmp_path / "reuse", sentence_embeddings=embeddings.mean, encoder=encoder,
        encoder_name=tiny_bert_dir,
    )
    config_named = AnnotatorConfig(
        kind="embedding", model_name_or_path=tiny_bert_dir, threshold="positive_fraction", positive_fraction=0.5
    )
    loaded = annotate_corpus(make_corpus(), config_named, tmp_path / "named")
    assert reused["annotator_score"].between(-2, 2).all()
    # Same encoder, texts and batches: equal up to float32 rounding.
    np.testing.assert_allclose(reused["annotator_score"], loaded["annotator_score"], atol=1e-5)
    np.testing.assert_array_equal(reused["pseudo_label"], loaded["pseudo_label"])
    assert reused["pseudo_label"].sum() == 3  # top half of 6


def test_another_encoder_ignores_the_classifier_embeddings(tiny_bert_dir):
    # A different encoder is named: the (wrong-width) classifier embeddings must not be used.
    config = AnnotatorConfig(kind="embedding", model_name_or_path=tiny_bert_dir)
    scores = embedding_scores(
        TEXTS, config, sentence_embeddings=torch.zeros(len(TEXTS), 7), encoder=None, encoder_name="minilm"
    )
    assert scores.shape == (len(TEXTS),) and np.isfinite(scores).all()


def test_bad_inputs_are_explained(tiny_bert_dir):
    with pytest.raises(ValueError, match="needs a sentence encoder; set annotator.model_name_or_path"):
        embedding_scores(TEXTS, AnnotatorConfig(kind="embedding"))
    encoder = load_classifier(tiny_bert_dir)
    with pytest.raises(ValueError, match="sentence_embeddings has 2 rows for 6 texts"):
        embedding_scores(TEXTS, AnnotatorConfig(), sentence_embeddings=torch.zeros(2, 32), encoder=encoder)
    with pytest.raises(ValueError, match="at least one unsafe and one safe description"):
        embedding_scores(TEXTS, AnnotatorConfig(safe_descriptions=[]), encoder=encoder)


def test_packaged_minilm_scores_a_threat_above_a_recipe():
    texts = [
        "I know where you live and I am going to kill you tonight.",
        "Preheat the oven to 180 degrees and bake the banana bread for 50 minutes.",
        "I want to cut myself again tonight.",
        "What time does the library open on Sundays?",
    ]
    scores = embedding_scores(texts, AnnotatorConfig(kind="embedding", model_name_or_path="minilm"))
    assert scores[0] > scores[1]
    assert scores[2] > scores[3]
    assert min(scores[0], scores[2]) > max(scores[1], scores[3])
