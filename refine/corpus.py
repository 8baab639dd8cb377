"""Load a corpus, map its columns, and split it into the gold test split, the labelled set L and the training corpus.

The corpus is a pandas DataFrame with one row per text:

- ``id``: row number in the source file (stable across runs);
- ``text``: the text the annotator and the classifier see;
- ``gold``: 1 unsafe, 0 safe, -1 no gold label;
- ``split``: ``"train"`` (the corpus X that is annotated and refined) or ``"test"`` (gold test split: evaluation only);
- ``labeled``: True for the members of L (a random subset of the gold-labelled training rows);
- ``prompt`` and ``response``: for prompt/response pairs, the two parts of ``text``;
- ``group``: with ``data.group_column``, the row's group (as text); a group never straddles the split.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import numpy as np
import pandas as pd

from refine.config import DataConfig
from refine.xstest import read_xstest

logger = logging.getLogger(__name__)

FILE_BUILDERS = {".csv": "csv", ".jsonl": "json", ".json": "json", ".parquet": "parquet"}
NO_GOLD = -1


def _builder_for(path: str) -> str | None:
    name = path.lower()
    for suffix in (".gz", ".bz2", ".xz", ".zst"):
        name = name.removesuffix(suffix)
    return FILE_BUILDERS.get(Path(name).suffix)


def read_table(path: str, *, hub_split: str = "train") -> pd.DataFrame:
    """Read a local file through ``datasets`` (CSV, JSON Lines, Parquet, optionally compressed) or a Hub dataset."""
    import datasets

    builder = _builder_for(path)
    if builder is not None or os.path.exists(path):
        if not os.path.isfile(path):
            raise FileNotFoundError(f"corpus file {path} not found; check data.path (and $SILR_DATA_DIR).")
        if builder is None:
            raise ValueError(f"cannot read {path}: use .csv, .jsonl, .json, .parquet (optionally .gz).")
        if os.path.getsize(path) == 0:
            raise ValueError(f"corpus {path} is empty; point data.path at a file with rows.")
        try:
            table = datasets.load_dataset(builder, data_files=path, split="train")
        except Exception as err:  # datasets raises many types for unreadable files
            # DatasetGenerationError hides the reason in its cause, and some errors carry no message at all.
            cause = err.__cause__ or err
            reason = (str(cause).splitlines() or [type(cause).__name__])[0]
            raise ValueError(f"cannot read corpus file {path}: {reason}") from err
    else:
        table = datasets.load_dataset(path, split=hub_split)
    return table.to_pandas()


def _require_columns(frame: pd.DataFrame, columns: list[str], path: str, *, extra_setting: str) -> None:
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise ValueError(
            f"column {', '.join(map(repr, missing))} not found in {path} (found: {', '.join(map(str, frame.columns))}); "
            f"set data.text_column / data.label_columns{extra_setting} to existing columns."
        )


def _label_key(value) -> str:
    """A comparable key for a label value: integral numbers compare as integers, so 1, 1.0 and "1" all match.

    A label column with a missing value is read as float (pandas has no missing int), turning 1 into 1.0.
    """
    if isinstance(value, (bool, np.bool_)):
        return str(int(value))  # True == 1, as in Python
    if isinstance(value, (int, float, np.integer, np.floating)) and float(value).is_integer():
        return str(int(value))
    return str(value)


def matches_values(values: pd.Series, wanted: list) -> pd.Series:
    """True where a value equals one of ``wanted`` (1, 1.0 and "1" all match); missing values never match."""
    keys = {_label_key(v) for v in wanted}
    return values.map(lambda v: not pd.isna(v) and _label_key(v) in keys).astype(bool)


def gold_labels(
    frame: pd.DataFrame, label_columns: list[str], positive_values: list, negative_values: list | None = None
) -> np.ndarray:
    """1 if any label column holds a positive value, 0 if some column is filled and none positive, else -1.

    With ``negative_values``, every filled value must be positive or negative; anything else is an error (a label
    column that is not binary in the way the config says).
    """
    if not label_columns:
        return np.full(len(frame), NO_GOLD, dtype=np.int8)
    positive = np.zeros(len(frame), dtype=bool)
    filled = np.zeros(len(frame), dtype=bool)
    for column in label_columns:
        is_positive = matches_values(frame[column], positive_values)
        if negative_values is not None:
            other = frame[column].notna() & ~is_positive & ~matches_values(frame[column], negative_values)
            if other.any():
                seen = sorted({_label_key(v) for v in frame.loc[other, column]})[:5]
                raise ValueError(
                    f"label column {column!r} holds values {seen} that are in neither positive_values "
                    f"{positive_values} nor negative_values {negative_values}; add them to one of the two."
                )
        positive |= is_positive.to_numpy()
        filled |= frame[column].notna().to_numpy()
    return np.where(positive, 1, np.where(filled, 0, NO_GOLD)).astype(np.int8)


def build_texts(frame: pd.DataFrame, config: DataConfig) -> pd.Series:
    """The text of each row: ``text_column``, or the template filled from prompt/response columns."""
    if config.prompt_column and config.response_column:
        prompts = frame[config.prompt_column].fillna("").astype(str)
        responses = frame[config.response_column].fillna("").astype(str)
        return pd.Series(
            [config.template.format(prompt=p, response=r) for p, r in zip(prompts, responses, strict=True)],
            index=frame.index,
        )
    return frame[config.text_column].fillna("").astype(str)


def split_corpus(gold: np.ndarray, *, test_fraction: float, num_labeled: int, seed: int,
                 groups: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Seeded split. Returns ``(is_test, is_labeled)`` boolean arrays.

    The test split is ``test_fraction`` of the gold-labelled rows; L is ``num_labeled`` rows drawn uniformly from the
    remaining gold-labelled rows. Rows without gold always stay in the training corpus. With ``groups`` (one value
    per row), ``test_fraction`` of the groups that hold gold-labelled rows go to the test split whole, so no group has
    rows on both sides.
    """
    rng = np.random.default_rng(seed)
    has_gold = np.flatnonzero(gold != NO_GOLD)
    is_test = np.zeros(len(gold), dtype=bool)
    if groups is None:
        shuffled = rng.permutation(has_gold)
        n_test = int(round(test_fraction * len(has_gold)))
        is_test[shuffled[:n_test]] = True
    else:
        names = pd.unique(pd.Series(groups[has_gold]))
        test_groups = rng.permutation(names)[: int(round(test_fraction * len(names)))]
        is_test[has_gold] = pd.Series(groups[has_gold]).isin(test_groups).to_numpy()
        shuffled = rng.permutation(has_gold)
    pool = shuffled[~is_test[shuffled]]
    if num_labeled > len(pool):
        raise ValueError(
            f"the labelled set needs num_labeled={num_labeled} gold-labelled training rows but only {len(pool)} exist; "
            "lower data.num_labeled or data.test_fraction."
        )
    is_labeled = np.zeros(len(gold), dtype=bool)
    is_labeled[pool[:num_labeled]] = True
    return is_test, is_labeled


def load_corpus(config: DataConfig, *, extra_columns: tuple[str, ...] = ()) -> pd.DataFrame:
    """Read, map and split the corpus described by ``config``.

    Args:
        config: The data section of the run config.
        extra_columns: Source columns to carry along unchanged (e.g. an existing pseudo-label column).

    Returns:
        The corpus frame described in the module docstring, plus ``extra_columns``.

    Raises:
        FileNotFoundError: If the file does not exist.
        ValueError: On a missing column, an empty corpus, or labels that cannot be split as asked.
    """
    if not config.path:
        raise ValueError("data.path is not set; point it at a corpus file or a Hub dataset id (see configs/refine/).")
    if config.format == "xstest":
        frame = read_xstest(config.path)
    else:
        frame = read_table(config.path, hub_split=config.hub_split)
    pairs = bool(config.prompt_column and config.response_column)  # the same test as build_texts
    text_columns = [config.prompt_column, config.response_column] if pairs else [config.text_column]
    group = [config.group_column] if config.group_column else []
    _require_columns(frame, [*text_columns, *config.label_columns, *group, *extra_columns], config.path,
                     extra_setting=" / data.group_column / annotator.column" if extra_columns or group else "")
    if len(frame) == 0:
        raise ValueError(f"corpus {config.path} is empty; point data.path at a file with rows.")
    if config.max_examples is not None and config.max_examples < len(frame):
        keep = np.sort(np.random.default_rng(config.sample_seed).choice(len(frame), config.max_examples, replace=False))
        frame = frame.iloc[keep]
    corpus = pd.DataFrame({"id": frame.index.to_numpy(), "text": build_texts(frame, config).to_numpy()})
    empty = (corpus["text"].str.strip() == "").sum()
    if empty == len(corpus):
        raise ValueError(f"every text in {config.path} is empty; check data.text_column.")
    if empty:
        logger.warning("%d of %d texts are empty; they are kept and scored like any other text.", empty, len(corpus))
    corpus["gold"] = gold_labels(frame, config.label_columns, config.positive_values, config.negative_values)
    labelled = corpus["gold"][corpus["gold"] != NO_GOLD]
    if config.label_columns and labelled.nunique() < 2:
        raise ValueError(
            f"gold labels in {', '.join(config.label_columns)} hold a single class ({len(labelled)} rows); check "
            f"data.positive_values={config.positive_values} matches the label values."
        )
    groups = frame[config.group_column].astype(str).to_numpy() if config.group_column else None
    is_test, is_labeled = split_corpus(
        corpus["gold"].to_numpy(), test_fraction=config.test_fraction, num_labeled=config.num_labeled,
        seed=config.seed, groups=groups,
    ) if config.label_columns else (np.zeros(len(corpus), bool), np.zeros(len(corpus), bool))
    corpus["split"] = np.where(is_test, "test", "train")
    corpus["labeled"] = is_labeled
    if pairs:  # kept apart too, so a reward model can score the pair with its own template
        corpus["prompt"] = frame[config.prompt_column].fillna("").astype(str).to_numpy()
        corpus["response"] = frame[config.response_column].fillna("").astype(str).to_numpy()
    if groups is not None:
        corpus["group"] = groups
    for column in extra_columns:
        corpus[column] = frame[column].to_numpy()
    return corpus.reset_index(drop=True)
