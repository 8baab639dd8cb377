"""Resumable chunked scoring for slow annotators (``hf``, ``openai``).

The corpus is cut into consecutive chunks of ``CHUNK_SIZE`` rows. Each scored chunk is written atomically to
``<stage_dir>/partial/chunk-<k>.parquet`` (columns ``id``, ``annotator_score``), so an interrupted annotation resumes
at the first missing chunk and a finished one is never scored twice. A chunk is checked against the corpus ids it
should cover; a corrupt or mismatched chunk raises a ValueError that names the file to delete.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from refine.rundir import read_parquet, write_parquet

logger = logging.getLogger(__name__)

# Rows per chunk: at ~10 texts/s (SmolLM2-135M on 2 CPU cores) a chunk is ~25 s of work lost at most on interruption,
# and a 100k-row corpus makes ~400 small files.
CHUNK_SIZE = 256
PARTIAL_DIR = "partial"

# A scorer maps a list of texts to their scores, shape (n,), and calls ``advance(k)`` after each k texts are done.
Scorer = Callable[[list[str], Callable[[int], None]], np.ndarray]


@dataclass
class ChunkedScores:
    """Scores of every row, and how many of them this call computed (the rest were read from chunks)."""

    scores: np.ndarray  # (N,) float64, corpus order
    num_scored: int
    seconds: float  # time spent scoring (model loading included), 0 when everything was read back


def chunk_path(stage_dir: str | Path, index: int) -> Path:
    return Path(stage_dir) / PARTIAL_DIR / f"chunk-{index:05d}.parquet"


def _read_chunk(path: Path, expected_ids: np.ndarray) -> np.ndarray:
    frame = read_parquet(path)  # ValueError naming the file on a damaged file
    if list(frame.columns) != ["id", "annotator_score"] or not np.array_equal(frame["id"].to_numpy(), expected_ids):
        raise ValueError(
            f"partial chunk {path} does not match the corpus (columns {list(frame.columns)}, {len(frame)} rows, "
            f"expected ids {expected_ids[:3].tolist()}...); delete it and rerun."
        )
    scores = frame["annotator_score"].to_numpy(dtype=np.float64)
    if not np.isfinite(scores).all():
        raise ValueError(f"partial chunk {path} holds non-finite scores; delete it and rerun.")
    return scores


def score_in_chunks(
    ids: np.ndarray,
    texts: list[str],
    make_scorer: Callable[[], Scorer],
    stage_dir: str | Path,
    *,
    desc: str,
    chunk_size: int | None = None,
) -> ChunkedScores:
    """Score ``texts`` chunk by chunk, reading finished chunks back and writing each new one atomically.

    Args:
        ids: Corpus ids, shape ``(N,)``, stored in each chunk to detect a chunk from another corpus.
        texts: The N texts, corpus order.
        make_scorer: Builds the scorer (e.g. loads the model); called only if some chunk is missing.
        stage_dir: The annotate stage folder; chunks go to its ``partial/`` subfolder.
        desc: Progress-bar label.
        chunk_size: Rows per chunk (default ``CHUNK_SIZE``).

    Returns:
        :class:`ChunkedScores` in corpus order.

    Raises:
        ValueError: If a chunk file is corrupt or does not match the corpus, or a scorer returns the wrong shape.
    """
    chunk_size = chunk_size or CHUNK_SIZE
    ids = np.asarray(ids)
    n = len(texts)
    scores = np.empty(n, dtype=np.float64)
    missing = []
    for index, start in enumerate(range(0, n, chunk_size)):
        path = chunk_path(stage_dir, index)
        if path.exists():
            scores[start : start + chunk_size] = _read_chunk(path, ids[start : start + chunk_size])
        else:
            missing.append((index, start))
    done = n - sum(min(chunk_size, n - start) for _, start in missing)
    if done:
        logger.info("resuming: %d of %d texts already scored in %s", done, n, Path(stage_dir) / PARTIAL_DIR)
    if not missing:
        return ChunkedScores(scores=scores, num_scored=0, seconds=0.0)
    began = time.perf_counter()
    scorer = make_scorer()
    with tqdm(total=n, initial=done, desc=desc, unit="text") as bar:
        for index, start in missing:
            stop = min(start + chunk_size, n)
            chunk_scores = np.asarray(scorer(texts[start:stop], bar.update), dtype=np.float64)
            if chunk_scores.shape != (stop - start,):
                raise ValueError(f"scorer returned shape {chunk_scores.shape} for {stop - start} texts.")
            scores[start:stop] = chunk_scores
            frame = pd.DataFrame({"id": ids[start:stop], "annotator_score": chunk_scores})
            write_parquet(chunk_path(stage_dir, index), frame)
    seconds = time.perf_counter() - began
    num_scored = n - done
    logger.info(
        "scored %d texts in %.1fs (%.1f texts/s, model loading included)", num_scored, seconds,
        num_scored / max(seconds, 1e-9),
    )
    return ChunkedScores(scores=scores, num_scored=num_scored, seconds=seconds)
