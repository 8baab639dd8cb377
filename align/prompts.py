"""Prompt sets: red-team prompts for PPO and held-out harmful prompts for evaluation, kept disjoint.

Named sources are folders under the data directory (``${data_dir}``, see ``refine.config_loading.data_dir``):

- ``hh_rlhf_harmless_test``: the first Human turn of each HH-RLHF harmless-base test dialogue (unique turns).
- ``rtp_challenging_prompts``: RealToxicityPrompts challenging prefixes (continuation prompts).
- ``harmbench_behaviors``: HarmBench behaviors without a context string (standard and copyright).
- ``advbench_behaviors``, ``simple_safety_tests``, ``do_not_answer_prompts``.

Any other source is a file: ``.jsonl``/``.json``/``.csv`` (optionally gzipped) with a ``prompt`` column, or ``.txt``
with one prompt per line.

The split is written to ``<run>/prompts/``: ``train.jsonl`` and ``eval.jsonl`` (``id``, ``source``, ``prompt``) and
``split.json`` (sources, counts, the overlap found and what was done with it).
"""

from __future__ import annotations

import gzip
import json
import logging
import os
import re
import unicodedata
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from align.config import PromptsConfig
from refine.config_loading import data_dir
from refine.errors import damaged_folder, one_line

logger = logging.getLogger(__name__)


class PromptOverlapError(ValueError):
    """Training prompts include evaluation prompts."""


def _hh_first_turns(folder: Path) -> list[str]:
    turns = []
    with gzip.open(folder / "test.jsonl.gz", "rt", encoding="utf-8") as handle:
        for line in handle:
            dialogue = json.loads(line)["chosen"]
            first = dialogue.split("\n\nHuman:", 1)[-1].split("\n\nAssistant:", 1)[0].strip()
            if first:
                turns.append(first)
    return list(dict.fromkeys(turns))


def _rtp(folder: Path) -> list[str]:
    return [line.strip() for path in sorted(folder.glob("rtp_*.txt")) for line in path.read_text("utf-8").splitlines()
            if line.strip()]


def _harmbench(folder: Path) -> list[str]:
    frame = pd.read_csv(folder / "harmbench_behaviors_text_all.csv")
    return frame.loc[frame["ContextString"].isna(), "Behavior"].astype(str).tolist()


def _advbench(folder: Path) -> list[str]:
    return pd.read_csv(folder / "advbench_behaviors.csv")["Behavior"].astype(str).tolist()


def _simple_safety(folder: Path) -> list[str]:
    return pd.read_csv(folder / "SimpleSafetyTests - test cases.csv")["prompts_final"].astype(str).tolist()


def _do_not_answer(folder: Path) -> list[str]:
    prompts = []
    for path in sorted(folder.glob("*.jsonl")):
        prompts += [json.loads(line)["prompt"] for line in path.read_text("utf-8").splitlines() if line.strip()]
    return prompts


NAMED_SOURCES: dict[str, Callable[[Path], list[str]]] = {
    "hh_rlhf_harmless_test": _hh_first_turns,
    "rtp_challenging_prompts": _rtp,
    "harmbench_behaviors": _harmbench,
    "advbench_behaviors": _advbench,
    "simple_safety_tests": _simple_safety,
    "do_not_answer_prompts": _do_not_answer,
}


def _read_file(path: Path) -> list[str]:
    try:
        return _read_prompt_file(path)
    except (EOFError, zlib.error, ValueError) as err:  # truncated gzip, bad JSON/CSV/UTF-8 (all ValueErrors)
        if isinstance(err, ValueError) and str(path) in str(err):
            raise  # silr's own message: it names the file and the fix
        raise ValueError(f"cannot read prompts from {path} ({type(err).__name__}: {one_line(err, 120)}); "
                         "check the file is complete and in the format its name says.") from err


def _read_prompt_file(path: Path) -> list[str]:
    name = path.name.lower().removesuffix(".gz")
    if name.endswith(".txt"):
        opener = gzip.open if path.name.endswith(".gz") else open
        with opener(path, "rt", encoding="utf-8") as handle:
            return [line.strip() for line in handle if line.strip()]
    if name.endswith(".csv"):
        frame = pd.read_csv(path)
    elif name.endswith((".jsonl", ".json")):
        frame = pd.read_json(path, lines=name.endswith(".jsonl"))
    else:
        raise ValueError(f"cannot read prompts from {path}: use .jsonl, .json, .csv (a `prompt` column) or .txt.")
    if "prompt" not in frame.columns:
        raise ValueError(f"column `prompt` not found in {path} (found: {', '.join(map(str, frame.columns))}); "
                         "name the prompt column `prompt`.")
    return frame["prompt"].dropna().astype(str).tolist()


def read_source(source: str) -> list[str]:
    """The prompts of a named data set (under the data directory) or of a file, in file order, empty ones dropped."""
    if source in NAMED_SOURCES:
        folder = Path(data_dir()) / source
        if not folder.is_dir():
            raise FileNotFoundError(f"prompt set {source} not found at {folder}; set $SILR_DATA_DIR to the folder "
                                    "holding the data sets (default ../shared/data).")
        prompts = NAMED_SOURCES[source](folder)
    else:
        path = Path(source)
        if not path.is_file():
            raise FileNotFoundError(f"prompt source {source!r} is neither a known set ({', '.join(NAMED_SOURCES)}) "
                                    "nor an existing file.")
        prompts = _read_file(path)
    prompts = [p.strip() for p in prompts if p and p.strip()]
    if not prompts:
        raise ValueError(f"prompt source {source!r} holds no prompts.")
    return prompts


def normalize_prompt(text: str) -> str:
    """The form compared for overlap: NFKC, lower case, punctuation removed, whitespace collapsed."""
    text = unicodedata.normalize("NFKC", text).lower()
    text = re.sub(r"[^\w\s]", " ", text)
    return " ".join(text.split())


@dataclass
class PromptSplit:
    """Training and evaluation prompts (frames with ``id``, ``source``, ``prompt``) and what was recorded."""

    train: pd.DataFrame
    eval: pd.DataFrame
    record: dict


def _frame(rows: list[tuple[str, str]], prefix: str) -> pd.DataFrame:
    return pd.DataFrame({"id": [f"{prefix}{i}" for i in range(len(rows))], "source": [s for s, _ in rows],
                         "prompt": [p for _, p in rows]})


def build_split(config: PromptsConfig, *, fits: Callable[[str], bool] | None = None) -> PromptSplit:
    """Read the sources, sample evaluation prompts per source, check overlap, sample training prompts.

    Args:
        config: The prompts section.
        fits: Whether a training prompt is short enough for the policy (see ``max_prompt_tokens``); None keeps all.

    Raises:
        PromptOverlapError: If a training prompt equals an evaluation prompt and ``overlap_policy`` is ``error``.
        ValueError: If no training prompt is left.
    """
    rng = np.random.default_rng(config.seed)
    eval_rows, eval_pool = [], set()
    for source in dict.fromkeys(config.eval_sources):
        prompts = list(dict.fromkeys(read_source(source)))
        eval_pool.update(normalize_prompt(p) for p in prompts)
        take = min(config.num_eval_per_source, len(prompts))
        chosen = np.sort(rng.choice(len(prompts), take, replace=False))
        eval_rows += [(source, prompts[i]) for i in chosen]
    train_rows, seen = [], set()
    for source in dict.fromkeys(config.train_sources):
        for prompt in read_source(source):
            key = normalize_prompt(prompt)
            if key not in seen:
                seen.add(key)
                train_rows.append((source, prompt))
    overlap = [p for _, p in train_rows if normalize_prompt(p) in eval_pool]
    record = {"train_sources": list(config.train_sources), "eval_sources": list(config.eval_sources),
              "overlap_policy": config.overlap_policy, "overlap_count": len(overlap), "overlap_examples": overlap[:5]}
    if overlap:
        message = (f"{len(overlap)} training prompt(s) also appear among the evaluation prompts "
                   f"(e.g. {overlap[0]!r}); remove them from prompts.train_sources, or set prompts.overlap_policy to "
                   "drop (or warn)")
        if config.overlap_policy == "error":
            raise PromptOverlapError(message + ".")
        if config.overlap_policy == "drop":
            train_rows = [(s, p) for s, p in train_rows if normalize_prompt(p) not in eval_pool]
            logger.warning("dropped %d training prompts that also appear among the evaluation prompts", len(overlap))
        else:
            logger.warning("%s; kept because overlap_policy=warn: the evaluation is not held out.", message)
    if fits is not None:
        kept = [(s, p) for s, p in train_rows if fits(p)]
        record["dropped_too_long"] = len(train_rows) - len(kept)
        if record["dropped_too_long"]:
            logger.info("dropped %d training prompts longer than prompts.max_prompt_tokens=%d tokens",
                        record["dropped_too_long"], config.max_prompt_tokens)
        train_rows = kept
    if not train_rows:
        raise ValueError("no training prompt is left; check prompts.train_sources, overlap_policy and "
                         "max_prompt_tokens.")
    record["train_pool"] = len(train_rows)
    if config.num_train is not None and config.num_train < len(train_rows):
        chosen = np.sort(rng.choice(len(train_rows), config.num_train, replace=False))
        train_rows = [train_rows[i] for i in chosen]
    train, evaluation = _frame(train_rows, "train-"), _frame(eval_rows, "eval-")
    record.update({"num_train": len(train), "num_eval": len(evaluation),
                   "train_per_source": train["source"].value_counts().to_dict(),
                   "eval_per_source": evaluation["source"].value_counts().to_dict()})
    return PromptSplit(train=train, eval=evaluation, record=record)


def write_frame_jsonl(path: str | os.PathLike, frame: pd.DataFrame) -> None:
    from refine.rundir import atomic_path

    with atomic_path(path) as tmp, tmp.open("w", encoding="utf-8") as handle:
        for row in frame.to_dict(orient="records"):
            handle.write(json.dumps(row, ensure_ascii=False) + "\n")


def read_jsonl(path: str | os.PathLike) -> list[dict]:
    """The rows of a JSONL file silr wrote; a damaged one raises ValueError naming it."""
    path = Path(path)
    with path.open(encoding="utf-8") as handle:
        try:
            return [json.loads(line) for line in handle if line.strip()]
        except (json.JSONDecodeError, UnicodeDecodeError) as err:
            raise damaged_folder(path.parent, ValueError(f"{path.name} is corrupt ({type(err).__name__})"),
                                 rerun="rerun (that stage is recomputed)") from err


def ensure_prompts(config) -> Path:
    """The prompts stage of an align run (``AlignConfig``): build and record the split unless done with this config."""
    from align.policy import prompt_length_check
    from align.stages import building, is_done, prompts_fingerprint, run_dir
    from refine.rundir import write_json

    run, stage_config = run_dir(config), prompts_fingerprint(config)
    if is_done(run, "prompts", stage_config, overwrite=config.overwrite_output_dir):
        return run.stage("prompts")
    fits = prompt_length_check(config.policy, config.prompts.max_prompt_tokens)
    split = build_split(config.prompts, fits=fits)
    with building(run, "prompts", stage_config) as tmp:
        write_frame_jsonl(tmp / "train.jsonl", split.train)
        write_frame_jsonl(tmp / "eval.jsonl", split.eval)
        write_json(tmp / "split.json", split.record)
    logger.info("prompts: %d training (%s), %d evaluation (%s)", split.record["num_train"],
                ", ".join(config.prompts.train_sources), split.record["num_eval"],
                ", ".join(config.prompts.eval_sources))
    return run.stage("prompts")
