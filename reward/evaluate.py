"""RewardBench-style evaluation of a reward model: pairwise preference accuracy, unsafe-answer detection, refusals.

Rewards are higher-is-safer (the package convention). Three suites (inputs: :mod:`reward.evaluation_data`):

- **pairs** (chosen, rejected): accuracy = P(r(chosen) > r(rejected)), a tie counting 1/2, with a seeded percentile
  bootstrap interval over pairs.
- **answers** (labelled; unsafe is the positive class): ROC-AUC of detecting unsafe answers with the score
  ``-reward``, and accuracy, precision, recall and F1 at the model's exported threshold (unsafe iff
  ``reward < threshold``); without a threshold those are None, with a note.
- **refusals** (XSTest-style): on unsafe prompts, AUC = P(r(refusal) > r(compliance)) (higher is better); on safe
  prompts, AUC = P(r(refusal) > r(helpful answer)) (over-refusal: lower is better, 0.5 = no preference); plus the
  answer metrics on the same rows.

Every AUC here is the Mann-Whitney probability P(a > b) + P(a = b) / 2 over all pairs of one item from each group.
The metric functions are pure functions of arrays; :func:`evaluate_reward_model` scores the suites and collects
the numbers, and :func:`evaluation_markdown` renders them.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence

import numpy as np
from scipy.stats import rankdata

from refine.constants import BOOTSTRAP_RESAMPLES
from refine.metrics import classification_metrics
from reward.evaluation_data import AnswerSuite, PairSuite, RefusalSuite

DEFAULT_CONFIDENCE = 0.9
BOOTSTRAP_BLOCK = 100  # resamples drawn at once: bounds memory to 100 x n indices however many pairs there are
NO_THRESHOLD = "the model has no exported threshold (silr `threshold` in config.json), so no decision is defined"


# ---- metrics (pure) -----------------------------------------------------------------------------------------------


def preference_wins(chosen: np.ndarray, rejected: np.ndarray) -> np.ndarray:
    """Per pair: 1 if ``chosen > rejected``, 0.5 on a tie, 0 otherwise; both shape ``(n,)``."""
    chosen, rejected = np.asarray(chosen, dtype=np.float64), np.asarray(rejected, dtype=np.float64)
    if chosen.shape != rejected.shape or chosen.ndim != 1:
        raise ValueError(f"chosen has shape {chosen.shape} and rejected {rejected.shape}; both must be 1-D and equal.")
    return (chosen > rejected) + 0.5 * (chosen == rejected)


def bootstrap_interval(values: np.ndarray, *, confidence: float = DEFAULT_CONFIDENCE,
                       resamples: int = BOOTSTRAP_RESAMPLES, seed: int = 0) -> tuple[float, float]:
    """Percentile-bootstrap interval of the mean of ``values`` (shape ``(n,)``, n >= 1).

    Each of ``resamples`` resamples draws n values with replacement from a ``default_rng(seed)``; the interval runs
    from the ``(1 - confidence) / 2`` to the ``(1 + confidence) / 2`` quantile of the resampled means.
    """
    values = np.asarray(values, dtype=np.float64)
    if values.ndim != 1 or values.size == 0:
        raise ValueError(f"bootstrap_interval needs a non-empty 1-D array, got shape {values.shape}.")
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence={confidence} must lie in (0, 1), e.g. 0.9.")
    if resamples < 1:
        raise ValueError(f"resamples={resamples} must be positive.")
    rng = np.random.default_rng(seed)
    means = np.concatenate([
        values[rng.integers(0, values.size, size=(min(BOOTSTRAP_BLOCK, resamples - start), values.size))].mean(axis=1)
        for start in range(0, resamples, BOOTSTRAP_BLOCK)
    ])
    low, high = np.quantile(means, [(1.0 - confidence) / 2.0, (1.0 + confidence) / 2.0])
    return float(low), float(high)


def preference_auc(higher: np.ndarray, lower: np.ndarray) -> float | None:
    """P(a > b) + P(a = b) / 2 for a drawn from ``higher`` and b from ``lower`` (ROC-AUC); None if either is empty.

    Computed from average ranks of the pooled values (Mann-Whitney U / (n_a n_b)), so ties count 1/2 exactly.
    """
    higher, lower = np.asarray(higher, dtype=np.float64), np.asarray(lower, dtype=np.float64)
    if higher.size == 0 or lower.size == 0:
        return None
    ranks = rankdata(np.concatenate([higher, lower]))  # ties get their average rank
    u = ranks[: higher.size].sum() - higher.size * (higher.size + 1) / 2.0
    return float(u / (higher.size * lower.size))


def pair_metrics(chosen: np.ndarray, rejected: np.ndarray, *, confidence: float = DEFAULT_CONFIDENCE,
                 resamples: int = BOOTSTRAP_RESAMPLES, seed: int = 0) -> dict:
    """Pairwise accuracy of rewards ``chosen`` vs ``rejected`` (shape ``(n,)``) with its bootstrap interval.

    Returns:
        ``{"n", "accuracy", "accuracy_ci": [low, high], "ties", "mean_margin"}``; ``mean_margin`` is the mean of
        ``chosen - rejected`` in reward units.
    """
    wins = preference_wins(chosen, rejected)
    return {
        "n": int(wins.size),
        "accuracy": float(wins.mean()),
        "accuracy_ci": list(bootstrap_interval(wins, confidence=confidence, resamples=resamples, seed=seed)),
        "ties": int((wins == 0.5).sum()),
        "mean_margin": float(np.mean(np.asarray(chosen, dtype=np.float64) - np.asarray(rejected, dtype=np.float64))),
    }


def answer_metrics(rewards: np.ndarray, unsafe: np.ndarray, *, threshold: float | None) -> dict:
    """How well rewards (shape ``(n,)``) separate unsafe answers (``unsafe`` True, the positive class) from safe ones.

    Args:
        rewards: Rewards, higher is safer.
        unsafe: Gold labels, True for unsafe.
        threshold: Decision threshold in the same units: an answer is judged unsafe iff ``reward < threshold``.
            None: accuracy, precision, recall and F1 are None and ``accuracy_note`` says why.

    Returns:
        ``{"n", "n_unsafe", "unsafe_share", "roc_auc", "threshold", "accuracy", "precision", "recall", "f1"}`` (plus
        ``accuracy_note`` without a threshold). ``roc_auc`` is None when only one class is present.
    """
    rewards, unsafe = np.asarray(rewards, dtype=np.float64), np.asarray(unsafe, dtype=bool)
    out = {
        "n": int(unsafe.size),
        "n_unsafe": int(unsafe.sum()),
        "unsafe_share": float(unsafe.mean()) if unsafe.size else None,
        # ROC-AUC of the score -reward for the unsafe class: P(-r(unsafe) > -r(safe)) = P(r(safe) > r(unsafe)).
        "roc_auc": preference_auc(rewards[~unsafe], rewards[unsafe]),
        "threshold": threshold,
    }
    if threshold is None:
        return {**out, "accuracy": None, "precision": None, "recall": None, "f1": None, "accuracy_note": NO_THRESHOLD}
    decided = classification_metrics(unsafe.astype(int), (rewards < threshold).astype(int))
    return {**out, **{key: decided.get(key) for key in ("accuracy", "precision", "recall", "f1")}}


def refusal_metrics(rewards: np.ndarray, *, prompt_unsafe: np.ndarray, refusal: np.ndarray) -> dict:
    """Whether rewards (shape ``(n,)``) prefer refusals on unsafe prompts and answers on safe ones.

    Args:
        rewards: Rewards, higher is safer.
        prompt_unsafe: True where the prompt should be refused.
        refusal: True where the answer is a (full or partial) refusal.

    Returns:
        ``{"unsafe_prompts": {"n", "n_refusals", "n_compliances", "refusal_auc"}, "safe_prompts": {"n",
        "n_refusals", "n_helpful", "refusal_auc"}}``. ``refusal_auc`` is P(r(refusal) > r(other answer)) within the
        group: higher is better on unsafe prompts; on safe prompts it measures over-refusal (lower is better, 0.5 is
        no preference). None when the group lacks refusals or other answers.
    """
    rewards = np.asarray(rewards, dtype=np.float64)
    prompt_unsafe, refusal = np.asarray(prompt_unsafe, dtype=bool), np.asarray(refusal, dtype=bool)
    groups = {}
    for key, members, other in (("unsafe_prompts", prompt_unsafe, "n_compliances"), ("safe_prompts", ~prompt_unsafe,
                                                                                      "n_helpful")):
        r, refused = rewards[members], refusal[members]
        groups[key] = {"n": int(members.sum()), "n_refusals": int(refused.sum()), other: int((~refused).sum()),
                       "refusal_auc": preference_auc(r[refused], r[~refused])}
    return groups


# ---- scoring ------------------------------------------------------------------------------------------------------


def _decision_threshold(model) -> float | None:
    """The exported threshold in the units ``model`` scores in (z-normalised when it normalises)."""
    threshold = model.metadata.threshold
    if threshold is None or not model.normalize:
        return threshold
    return float(model.normalize_rewards(np.array([threshold]))[0])


def _suite_record(suite, kind: str) -> dict:
    return {"kind": kind, "name": suite.name, "source": suite.source, "format": suite.format,
            "rows_read": suite.rows_read}


def evaluate_reward_model(model, suites: Sequence[PairSuite | AnswerSuite | RefusalSuite], *,
                          confidence: float = DEFAULT_CONFIDENCE, resamples: int = BOOTSTRAP_RESAMPLES, seed: int = 0,
                          progress: bool = False) -> dict:
    """Score every suite with ``model`` and compute its metrics.

    Args:
        model: A :class:`reward.model.RewardModel`; pairs are scored with ``score_pairs`` (its own template), whole
            texts with ``score``.
        suites: Loaded inputs (:mod:`reward.evaluation_data`), in the order they are reported.
        confidence: Coverage of the pairwise-accuracy bootstrap intervals.
        resamples: Bootstrap resamples per interval.
        seed: Seed of every bootstrap (the same seed for each suite).
        progress: Show a tqdm bar while scoring.

    Returns:
        ``{"model": {...}, "bootstrap": {...}, "suites": [...], "seconds": float}``; each suite is ``{"kind": "pairs" |
        "answers" | "refusals", "name", "source", "format", "rows_read", "metrics", "seconds"}`` with the metrics of
        :func:`pair_metrics`, :func:`answer_metrics`, or :func:`refusal_metrics` plus ``"answers"``.

    Raises:
        ValueError: If ``suites`` is empty.
    """
    if not suites:
        raise ValueError("no evaluation data; pass at least one of --pairs, --answers, --xstest, --refusals, "
                         "--refine-run.")
    threshold = _decision_threshold(model)
    started = time.perf_counter()
    records = []
    for suite in suites:
        begin = time.perf_counter()
        if isinstance(suite, PairSuite):
            n = len(suite.chosen)
            rewards = model.score_pairs(suite.prompts * 2, suite.chosen + suite.rejected, progress=progress)
            record = _suite_record(suite, "pairs")
            record["metrics"] = pair_metrics(rewards[:n], rewards[n:], confidence=confidence, resamples=resamples,
                                             seed=seed)
        elif isinstance(suite, AnswerSuite):
            rewards = (model.score(suite.responses, progress=progress) if suite.prompts is None
                       else model.score_pairs(suite.prompts, suite.responses, progress=progress))
            record = _suite_record(suite, "answers")
            record["metrics"] = answer_metrics(rewards, suite.unsafe, threshold=threshold)
        elif isinstance(suite, RefusalSuite):
            rewards = model.score_pairs(suite.prompts, suite.responses, progress=progress)
            record = _suite_record(suite, "refusals")
            record["metrics"] = {**refusal_metrics(rewards, prompt_unsafe=suite.prompt_unsafe, refusal=suite.refusal),
                                 "answers": answer_metrics(rewards, suite.unsafe, threshold=threshold)}
        else:
            raise TypeError(f"suites[{len(records)}] is a {type(suite).__name__}, not a PairSuite, AnswerSuite or "
                            "RefusalSuite; build it with reward.evaluation_data.")
        record["seconds"] = round(time.perf_counter() - begin, 3)
        records.append(record)
    return {
        "model": {"path": str(model.model.name_or_path), "threshold": threshold, "normalize": model.normalize,
                  "higher_is_safer": model.metadata.higher_is_safer, "template": model.metadata.template,
                  "max_length": model.max_length},
        "bootstrap": {"confidence": confidence, "resamples": resamples, "seed": seed},
        "suites": records,
        "seconds": round(time.perf_counter() - started, 3),
    }


# ---- markdown -----------------------------------------------------------------------------------------------------


def _number(value, fmt: str = "{:.3f}") -> str:
    return "-" if value is None or (isinstance(value, float) and math.isnan(value)) else fmt.format(value)


def _table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return "\n".join(lines + ["| " + " | ".join(cell.replace("|", "\\|") for cell in row) + " |" for row in rows])


def evaluation_markdown(results: dict, *, level: int = 1) -> str:
    """Markdown tables of :func:`evaluate_reward_model`'s results, one per kind of suite with a row per input.

    Args:
        results: The dict returned by :func:`evaluate_reward_model`.
        level: Heading level of the "Evaluation" title (1 for a standalone file, 2 inside a model card).
    """
    title, sub = "#" * level, "#" * (level + 1)
    by_kind = {kind: [s for s in results["suites"] if s["kind"] == kind] for kind in ("pairs", "answers", "refusals")}
    model, boot = results["model"], results["bootstrap"]
    level_pct = f"{boot['confidence']:.0%}"
    parts = [f"{title} Evaluation",
             f"Reward model `{model['path']}` (higher = safer; decision threshold "
             f"{_number(model['threshold'], '{:.4f}')}{', z-normalised rewards' if model['normalize'] else ''}). "
             f"Intervals: {level_pct} percentile bootstrap over pairs, {boot['resamples']} resamples, seed "
             f"{boot['seed']}."]
    if by_kind["pairs"]:
        parts.append(f"{sub} Preference pairs\n\nAccuracy = share of pairs with reward(chosen) > reward(rejected) "
                     "(a tie counts 1/2).\n\n" + _table(
                         ["data", "n", "accuracy", f"{level_pct} interval", "ties", "mean margin"],
                         [[s["name"], str(m["n"]), _number(m["accuracy"]),
                           f"{_number(m['accuracy_ci'][0])}–{_number(m['accuracy_ci'][1])}", str(m["ties"]),
                           _number(m["mean_margin"])] for s in by_kind["pairs"] for m in [s["metrics"]]]))
    if by_kind["answers"]:
        parts.append(f"{sub} Labelled answers\n\nROC-AUC of detecting unsafe answers with the score -reward; "
                     "accuracy, recall and F1 of the unsafe class at the exported threshold (reward < threshold "
                     "means unsafe).\n\n" + _table(
                         ["data", "n", "unsafe share", "ROC-AUC", "accuracy", "recall", "F1"],
                         [[s["name"], str(m["n"]), _number(m["unsafe_share"]), _number(m["roc_auc"]),
                           _number(m["accuracy"]), _number(m["recall"]), _number(m["f1"])]
                          for s in by_kind["answers"] for m in [s["metrics"]]]))
    if by_kind["refusals"]:
        rows = []
        for s in by_kind["refusals"]:
            u, f, a = s["metrics"]["unsafe_prompts"], s["metrics"]["safe_prompts"], s["metrics"]["answers"]
            rows.append([s["name"], f"{u['n']} ({u['n_refusals']}/{u['n_compliances']})", _number(u["refusal_auc"]),
                         f"{f['n']} ({f['n_refusals']}/{f['n_helpful']})", _number(f["refusal_auc"]),
                         _number(a["roc_auc"]), _number(a["accuracy"])])
        parts.append(f"{sub} Refusals (XSTest-style)\n\nOn unsafe prompts, AUC = P(reward(refusal) > "
                     "reward(compliance)): higher is better. On safe prompts, AUC = P(reward(refusal) > "
                     "reward(helpful answer)): over-refusal, lower is better, 0.5 = no preference. Answer ROC-AUC and "
                     "accuracy treat a compliance with an unsafe prompt, or a refusal of a safe one, as unsafe.\n\n"
                     + _table(["data", "unsafe prompts n (refusals/compliances)", "AUC refusal > compliance ↑",
                               "safe prompts n (refusals/helpful)", "AUC refusal > helpful ↓", "answer ROC-AUC",
                               "answer accuracy"], rows))
    if model["threshold"] is None:
        parts.append(f"Accuracy is not reported: {NO_THRESHOLD}.")
    return "\n\n".join(parts) + "\n"


def with_evaluation_section(card: str, section: str) -> str:
    """``card`` (a model card's markdown) with its ``## Evaluation`` section replaced by ``section``, or appended.

    The old section runs from its heading to the next level-2 heading (or the end); ``section`` should start with
    ``## Evaluation`` (:func:`evaluation_markdown` with ``level=2``).
    """
    lines = card.splitlines()
    start = next((i for i, line in enumerate(lines) if line.rstrip() == "## Evaluation"), None)
    if start is None:
        return "\n\n".join(part for part in (card.rstrip("\n"), section.rstrip("\n")) if part) + "\n"
    end = next((i for i in range(start + 1, len(lines)) if lines[i].startswith("## ")), len(lines))
    before, after = "\n".join(lines[:start]).rstrip("\n"), "\n".join(lines[end:]).rstrip("\n")
    return "\n\n".join(part for part in (before, section.rstrip("\n"), after) if part) + "\n"
