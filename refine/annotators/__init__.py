"""Annotators: the source of the pseudo-labels that split the corpus into U1 (pseudo-unsafe) and U2 (pseudo-safe).

Kinds (``AnnotatorConfig.kind``):

- ``column``: labels already in the data (:mod:`refine.annotators.column`).
- ``embedding``: zero-shot similarity to class descriptions; not an LLM (:mod:`refine.annotators.embedding`).
- ``hf``: a local causal LM asked Yes/No (:mod:`refine.annotators.hf_causal`).
- ``openai``: an OpenAI-compatible chat server asked Yes/No (:mod:`refine.annotators.openai_chat`).
- ``simulated``: research only; gold labels with class-conditional flips (:mod:`refine.annotators.simulated`).

Every kind but ``column`` and ``simulated`` gives a score (higher = more likely unsafe) that :mod:`refine.annotators.decision` turns
into labels. The result is written to ``<stage_dir>/labels.parquet`` and read back on a rerun; the slow kinds also
keep finished chunks in ``<score_cache_dir>/partial/`` so an interrupted run resumes (:mod:`refine.annotators.chunks`).
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from refine.annotators.chunks import score_in_chunks
from refine.annotators.decision import check_both_classes, decide_labels
from refine.config import AnnotatorConfig
from refine.rundir import read_parquet, write_parquet

logger = logging.getLogger(__name__)

LABELS_FILE = "labels.parquet"
LABEL_COLUMNS = ["id", "annotator_score", "pseudo_label"]

_FIXES = {
    "column": "check annotator.column and annotator.column_positive_values against the values in the data",
    "embedding": "set annotator.threshold=positive_fraction (with annotator.positive_fraction) or labeled_prior, or "
    "change annotator.unsafe_descriptions / safe_descriptions",
    "hf": "set annotator.threshold=positive_fraction (with annotator.positive_fraction) or labeled_prior, or change "
    "annotator.instruction / few_shot",
}
_FIXES["openai"] = _FIXES["hf"]
_FIXES["simulated"] = "lower annotator.flip_unsafe / flip_safe"


def _read_labels(path: Path, corpus: pd.DataFrame) -> pd.DataFrame:
    labels = read_parquet(path)  # ValueError naming the file on a damaged file
    if list(labels.columns) != LABEL_COLUMNS or not np.array_equal(labels["id"].to_numpy(), corpus["id"].to_numpy()):
        raise ValueError(
            f"{path} does not match the corpus (columns {list(labels.columns)}, {len(labels)} rows for "
            f"{len(corpus)} texts); delete it and rerun."
        )
    return labels


def _scores(corpus, config, score_cache_dir, *, sentence_embeddings, encoder, encoder_name) -> tuple[np.ndarray, int]:
    """Annotator scores of every row, and how many were computed now (not read back from partial chunks)."""
    texts = corpus["text"].astype(str).tolist()
    if config.kind == "embedding":
        from refine.annotators.embedding import embedding_scores

        scores = embedding_scores(
            texts, config, sentence_embeddings=sentence_embeddings, encoder=encoder, encoder_name=encoder_name
        )
        return scores, len(texts)
    if config.kind == "hf":
        from refine.annotators.hf_causal import CausalLMScorer

        make_scorer, desc = (lambda: CausalLMScorer.from_config(config)), "annotating (hf)"
    elif config.kind == "openai":
        from refine.annotators.openai_chat import OpenAIChatScorer

        make_scorer, desc = (lambda: OpenAIChatScorer(config)), "annotating (openai)"
    else:
        raise ValueError(f"unknown annotator kind {config.kind!r}; use column, embedding, hf or openai.")
    result = score_in_chunks(corpus["id"].to_numpy(), texts, make_scorer, score_cache_dir, desc=desc)
    return result.scores, result.num_scored


def _pseudo_labels(corpus: pd.DataFrame, config: AnnotatorConfig, score_cache_dir: Path, *, is_train: np.ndarray,
                   sentence_embeddings, encoder, encoder_name) -> tuple[np.ndarray, np.ndarray, int]:
    """``(pseudo_label, annotator_score, texts scored now)`` of every corpus row with the configured kind; the
    keyword arguments as in :func:`annotate_corpus`."""
    if config.kind == "column":
        from refine.annotators.column import column_labels

        pseudo = column_labels(corpus, config.column, config.column_positive_values, config.column_negative_values,
                               config.column_other)
        return pseudo, np.select([pseudo == 1, pseudo == 0], [1.0, -1.0], 0.0), len(corpus)
    if config.kind == "simulated":
        from refine.annotators.simulated import simulated_labels

        pseudo = simulated_labels(corpus["gold"].to_numpy(), flip_unsafe=config.flip_unsafe,
                                  flip_safe=config.flip_safe, seed=config.noise_seed)
        return pseudo, np.where(pseudo == 1, 1.0, -1.0), len(corpus)
    scores, num_scored = _scores(corpus, config, score_cache_dir, sentence_embeddings=sentence_embeddings,
                                 encoder=encoder, encoder_name=encoder_name)
    labeled_gold = corpus.loc[corpus["labeled"].astype(bool), "gold"].to_numpy() if "labeled" in corpus else None
    pseudo = decide_labels(
        scores, is_train=is_train, threshold=config.threshold, positive_fraction=config.positive_fraction,
        labeled_gold=labeled_gold,
    )
    return pseudo, scores, num_scored


def annotate_corpus(
    corpus: pd.DataFrame,
    config: AnnotatorConfig,
    stage_dir: Path,
    *,
    sentence_embeddings: torch.Tensor | None = None,
    encoder=None,
    encoder_name: str | None = None,
    score_cache_dir: Path | None = None,
) -> pd.DataFrame:
    """Pseudo-label every corpus row, or read the labels of an earlier run from ``stage_dir``.

    Args:
        corpus: Columns ``id``, ``text``, ``gold`` (1/0/-1), ``split`` (``train``/``test``), ``labeled`` (bool), plus
            ``config.column`` for kind ``column``. See :mod:`refine.corpus`.
        config: The annotator section of the run config.
        stage_dir: The annotate stage folder (exists). ``labels.parquet`` and ``partial/`` chunks are written here.
        sentence_embeddings: Mean-pooled embeddings of ``corpus.text`` in corpus order, shape ``(N, hidden)``, from the
            classifier's encoder; the ``embedding`` kind reuses them when it uses that encoder. None: compute.
        encoder: ``(model, tokenizer)`` of that encoder (from :func:`refine.encoder.load_classifier`), or None.
        encoder_name: Its ``model_name_or_path``; the ``embedding`` kind reuses the encoder when
            ``config.model_name_or_path`` is None or equal to it.
        score_cache_dir: Where the slow kinds keep finished chunks of scores (``partial/``), so an interrupted
            annotation resumes and runs with other splits or thresholds reuse them. None: ``stage_dir``.

    Returns:
        One row per corpus row, in corpus order: ``id``, ``annotator_score`` (float64, higher = more likely unsafe),
        ``pseudo_label`` (int64, 1 = pseudo-unsafe, i.e. in U1; 0 = U2; -1 = abstained, only from ``column`` with
        ``column_other: abstain``). A rerun returns an identical frame.

    Raises:
        ValueError: On a corrupt or mismatched ``labels.parquet`` or chunk (names the file to delete), a bad column,
            an annotator that puts every training text in one class, or a server that rejects the request.
        AnnotatorRequestError: If an ``openai`` server keeps failing after every retry.
    """
    stage_dir = Path(stage_dir)
    path = stage_dir / LABELS_FILE
    if path.exists():
        labels = _read_labels(path, corpus)
        logger.info("read %d pseudo-labels from %s (delete it to annotate again)", len(labels), path)
        return labels
    began = time.perf_counter()
    is_train = (corpus["split"] == "train").to_numpy()
    pseudo, scores, num_scored = _pseudo_labels(
        corpus, config, Path(score_cache_dir or stage_dir), is_train=is_train, sentence_embeddings=sentence_embeddings,
        encoder=encoder, encoder_name=encoder_name,
    )
    check_both_classes(pseudo[is_train & (pseudo >= 0)], fix=_FIXES[config.kind])
    labels = pd.DataFrame({
        "id": corpus["id"].to_numpy(),
        "annotator_score": np.asarray(scores, dtype=np.float64),
        "pseudo_label": np.asarray(pseudo, dtype=np.int64),
    })
    write_parquet(path, labels)
    seconds = time.perf_counter() - began
    logger.info(
        "annotated %d texts with kind=%s: %.1f%% pseudo-unsafe (%d of %d training texts), %.1f texts/s%s",
        len(labels), config.kind, 100.0 * (labels["pseudo_label"] == 1).mean(), int((pseudo[is_train] == 1).sum()),
        int(is_train.sum()), num_scored / max(seconds, 1e-9),
        f" ({len(labels) - num_scored} read back from partial chunks)" if num_scored < len(labels) else "",
    )
    return labels


__all__ = ["LABELS_FILE", "annotate_corpus"]
