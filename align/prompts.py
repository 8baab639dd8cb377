"""Prompt sets: red-team prompts for PPO and held-out evaluation prompts, kept disjoint.

Evaluation prompts are of two kinds: ``eval_sources`` hold harmful requests a safe policy should refuse
(``should_refuse`` true), ``safe_eval_sources`` hold requests it should answer (``should_refuse`` false; they measure
over-refusal).

Named sources are read from folders under the data directory (``${data_dir}``, see
``refine.config_loading.data_dir``):

- ``hh_rlhf_harmless_test``: the first Human turn of each HH-RLHF harmless-base test dialogue (unique turns).
- ``rtp_challenging_prompts``: RealToxicityPrompts challenging prefixes (continuation prompts).
- ``harmbench_behaviors``: HarmBench behaviors without a context string (standard and copyright).
- ``advbench_behaviors``, ``simple_safety_tests``, ``do_not_answer_prompts``.
- ``xstest_safe`` / ``xstest_unsafe``: the prompts of ``xstest/xstest_prompts.csv`` labelled safe (167: they only
  look dangerous, "How can I kill a Python process?") / unsafe (133: their harmful contrasts).

Any other source is a file: ``.jsonl``/``.json``/``.csv`` (optionally gzipped) with a ``prompt`` column, or ``.txt``
with one prompt per line.

**Held out from the rewards.** Before the evaluation prompts are sampled, every evaluation pool loses the prompts a
reward model of this run was trained on: for each refine variant the pipeline runs whose corpus has a prompt column
(``data.prompt_column``, e.g. the XSTest answers), the prompts of its rows in the training split. With an XSTest
refine corpus, only the XSTest prompts of refine's test split stay, which neither the rewards nor the judge saw. Reward
models given as folders (``ppo.reward_models``, an external judge) are not known to silr and are not checked.

The split is written to ``<run>/prompts/``: ``train.jsonl`` (``id``, ``source``, ``prompt``), ``eval.jsonl`` (also
``should_refuse``) and ``split.json`` (sources, counts, the prompts held out from the rewards, the overlap found and
what was done with it).
"""

from __future__ import annotations

import dataclasses
import gzip
import json
import logging
import os
import re
import unicodedata
import zlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import numpy as np
import pandas as pd

from align.config import JUDGE, JUDGE_PAIRS, PromptsConfig
from align.policy import prompt_length_check
from align.stages import building, held_out_corpora, held_out_pair_models, is_done, prompts_fingerprint, run_dir
from refine.config_loading import data_dir
from refine.corpus import load_corpus
from refine.errors import SilrError, one_line
from refine.rundir import atomic_path, write_json
from reward.pairs_training import training_prompts

logger = logging.getLogger(__name__)


class PromptOverlapError(SilrError):
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


def _xstest(folder: Path, *, label: str) -> list[str]:
    path = folder / "xstest_prompts.csv"
    frame = pd.read_csv(path)
    missing = [c for c in ("prompt", "label") if c not in frame.columns]
    if missing:
        raise ValueError(f"{path} lacks column(s) {', '.join(missing)} (found: {', '.join(map(str, frame.columns))}); "
                         "restore it from its source (see SOURCE.md).")
    return frame.loc[frame["label"] == label, "prompt"].astype(str).tolist()


NAMED_SOURCES: dict[str, Callable[[Path], list[str]]] = {
    "hh_rlhf_harmless_test": _hh_first_turns,
    "rtp_challenging_prompts": _rtp,
    "harmbench_behaviors": _harmbench,
    "advbench_behaviors": _advbench,
    "simple_safety_tests": _simple_safety,
    "do_not_answer_prompts": _do_not_answer,
    "xstest_safe": partial(_xstest, label="safe"),
    "xstest_unsafe": partial(_xstest, label="unsafe"),
}
# Named sources read from a folder of another name (default: the source's own name).
SOURCE_FOLDERS = {"xstest_safe": "xstest", "xstest_unsafe": "xstest"}


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
        folder = Path(data_dir()) / SOURCE_FOLDERS.get(source, source)
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
    """Training prompts (``id``, ``source``, ``prompt``), evaluation prompts (also ``should_refuse``) and the record."""

    train: pd.DataFrame
    eval: pd.DataFrame
    record: dict


def _frame(rows: list[tuple[str, str]], prefix: str) -> pd.DataFrame:
    return pd.DataFrame({"id": [f"{prefix}{i}" for i in range(len(rows))], "source": [s for s, _ in rows],
                         "prompt": [p for _, p in rows]})


def _sample_eval(config: PromptsConfig, rng: np.random.Generator, held_out: Mapping[str, Sequence[str]]):
    """Evaluation rows ``(source, prompt, should_refuse)``, the pool they were drawn from, and the record of what the
    held-out rule dropped; sources to refuse first, then safe ones, each sampled after the drop."""
    excluded = {normalize_prompt(p) for prompts in held_out.values() for p in prompts}
    rows, pool, dropped = [], set(), {}
    kinds = [(s, True) for s in config.eval_sources] + [(s, False) for s in config.safe_eval_sources]
    for source, should_refuse in dict.fromkeys(kinds):
        prompts = list(dict.fromkeys(read_source(source)))
        kept = [p for p in prompts if normalize_prompt(p) not in excluded]
        dropped[source] = len(prompts) - len(kept)
        if not kept:
            raise ValueError(f"every prompt of evaluation source {source} ({len(prompts)}) is in the training data "
                             f"of {', '.join(held_out)}, so none is held out from the rewards; evaluate on another "
                             "source, or hold more out (refine: data.test_fraction; pairs: held_out_fraction).")
        pool.update(normalize_prompt(p) for p in kept)
        take = min(config.num_eval_per_source, len(kept))
        chosen = np.sort(rng.choice(len(kept), take, replace=False))
        rows += [(source, kept[i], should_refuse) for i in chosen]
    record = {"refine_variants": list(held_out), "reward_training_prompts": len(excluded),
              "dropped": sum(dropped.values()), "dropped_per_source": dropped}
    return rows, pool, record


def build_split(config: PromptsConfig, *, fits: Callable[[str], bool] | None = None,
                held_out: Mapping[str, Sequence[str]] | None = None) -> PromptSplit:
    """Read the sources, sample evaluation prompts per source, check overlap, sample training prompts.

    Args:
        config: The prompts section.
        fits: Whether a training prompt is short enough for the policy (see ``max_prompt_tokens``); None keeps all.
        held_out: Refine variant → the prompts its reward model trained on (:func:`reward_training_prompts`); they
            are removed from every evaluation source before it is sampled (compared with :func:`normalize_prompt`).

    Raises:
        PromptOverlapError: If a training prompt equals an evaluation prompt and ``overlap_policy`` is ``error``.
        ValueError: If no training prompt is left, or an evaluation source is left empty by ``held_out``.
    """
    rng = np.random.default_rng(config.seed)
    eval_rows, eval_pool, held_record = _sample_eval(config, rng, held_out or {})
    if held_record["dropped"]:
        logger.info("held out from the rewards: dropped %d evaluation prompts the training data of %s held (%s)",
                    held_record["dropped"], ", ".join(held_record["refine_variants"]),
                    ", ".join(f"{s}: {n}" for s, n in held_record["dropped_per_source"].items() if n))
    train_rows, seen = [], set()
    for source in dict.fromkeys(config.train_sources):
        for prompt in read_source(source):
            key = normalize_prompt(prompt)
            if key not in seen:
                seen.add(key)
                train_rows.append((source, prompt))
    overlap = [p for _, p in train_rows if normalize_prompt(p) in eval_pool]
    record = {"train_sources": list(config.train_sources), "eval_sources": list(config.eval_sources),
              "safe_eval_sources": list(config.safe_eval_sources), "held_out_from_rewards": held_record,
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
    train = _frame(train_rows, "train-")
    evaluation = _frame([(s, p) for s, p, _ in eval_rows], "eval-")
    evaluation["should_refuse"] = [refuse for *_, refuse in eval_rows]
    record.update({"num_train": len(train), "num_eval": len(evaluation),
                   "num_eval_should_refuse": int(evaluation["should_refuse"].sum()),
                   "num_eval_safe": int((~evaluation["should_refuse"]).sum()),
                   "train_per_source": train["source"].value_counts().to_dict(),
                   "eval_per_source": evaluation["source"].value_counts().to_dict()})
    return PromptSplit(train=train, eval=evaluation, record=record)


def reward_training_prompts(config) -> dict[str, list[str]]:
    """Refine variant → the prompts its classifier trained on: the training-split rows of its corpus.

    Only the refine variants this run needs (:func:`align.stages.held_out_corpora`: a corpus with a prompt column)
    are read, each with refine's own loader (the same seeded split). A reward model given by path that was trained
    on preference pairs (:func:`align.stages.held_out_pair_models`) adds its training pairs' prompts.
    ``config`` is an ``AlignConfig``.
    """
    prompts, loaded = {}, {}
    for variant, data in held_out_corpora(config, warn=True).items():
        pairs = bool(data.prompt_column and data.response_column)  # load_corpus keeps `prompt` for pairs
        column = "prompt" if pairs else data.prompt_column
        key = json.dumps(dataclasses.asdict(data), sort_keys=True, default=str)
        if key not in loaded:  # variants usually share the corpus: read it once
            corpus = load_corpus(data, extra_columns=() if pairs else (data.prompt_column,))
            loaded[key] = corpus.loc[corpus["split"] == "train", column].astype(str).tolist()
        prompts[variant] = loaded[key]
    for name, source in held_out_pair_models(config).items():
        # The judge this pipeline trains (judge:pairs) needs its pairs file: without it nothing could be held out.
        prompts[name] = training_prompts(source, required=name == f"{JUDGE}:{JUDGE_PAIRS}")
    return prompts


def write_frame_jsonl(path: str | os.PathLike, frame: pd.DataFrame) -> None:
    with atomic_path(path) as tmp, tmp.open("w", encoding="utf-8") as handle:
        for row in frame.to_dict(orient="records"):
            handle.write(json.dumps(row, ensure_ascii=False) + "\n")


def ensure_prompts(config) -> Path:
    """The prompts stage of an align run (``AlignConfig``): build and record the split unless done with this config."""
    run, stage_config = run_dir(config), prompts_fingerprint(config)
    if is_done(run, "prompts", stage_config, overwrite=config.overwrite_output_dir):
        return run.stage("prompts")
    fits = prompt_length_check(config.policy, config.prompts.max_prompt_tokens)
    split = build_split(config.prompts, fits=fits, held_out=reward_training_prompts(config))
    with building(run, "prompts", stage_config) as tmp:
        write_frame_jsonl(tmp / "train.jsonl", split.train)
        write_frame_jsonl(tmp / "eval.jsonl", split.eval)
        write_json(tmp / "split.json", split.record)
    logger.info("prompts: %d training (%s), %d evaluation to refuse (%s), %d to answer (%s)", split.record["num_train"],
                ", ".join(config.prompts.train_sources), split.record["num_eval_should_refuse"],
                ", ".join(config.prompts.eval_sources), split.record["num_eval_safe"],
                ", ".join(config.prompts.safe_eval_sources) or "none")
    return run.stage("prompts")
