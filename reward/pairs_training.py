"""Train a reward model on preference pairs (``python -m reward train-pairs``): TRL's ``RewardTrainer``.

The standard RLHF reward model, trained on human (or any) preferences with the Bradley-Terry loss
``-log sigmoid(r(chosen) - r(rejected))``. silr uses it as a **judge** independent of its refined rewards: the
refined rewards learn a safety label from an annotator's pseudo-labels on one corpus, while this model learns from
pairwise human preferences on another (by default the HH-RLHF harmless pairs in ``../shared/data``). It is also a
baseline reward: what a few thousand costly human preference pairs buy.

- Pairs are read as ``reward evaluate`` reads them (:func:`reward.evaluation_data.load_pairs`: HH-RLHF transcripts,
  whose last Human turn is the prompt, or prompt/chosen/rejected rows) and rendered with the reward template.
- Split by prompt (:func:`held_out_mask`): every pair of one prompt is in the training or the held-out part, so the
  held-out pairwise accuracy is on unseen prompts. The held-out pairs are written to ``held_out_pairs.jsonl``, for
  ``reward evaluate --pairs``; ``align`` evaluates such a model on them only, and holds its training prompts out of
  the evaluation prompts (:func:`training_prompts`).
- The output folder is a silr reward model like an export: one logit (higher means safer), safetensors only, the
  ``silr`` block with a threshold (:func:`best_threshold`), calibration over the training answers, and provenance.

A pairwise model has no absolute zero: its threshold is the reward that best separates the chosen from the rejected
answers of the training pairs, i.e. "below it, an answer looks more like a rejected answer than a chosen one".
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import time
from pathlib import Path

import numpy as np
from sklearn.metrics import roc_curve

from refine.packaged_models import locate_model
from refine.rundir import atomic_dir, read_json
from refine.transformers_setup import load_classifier_tokenizer, quiet_transformers
from reward.config import METADATA_KEY, Calibration, PairTrainingConfig, RewardMetadata
from reward.evaluation_data import PairSuite, load_pairs, sample_rows
from reward.export import check_output_folder, save_reward_folder

logger = logging.getLogger(__name__)

HELD_OUT_FILE = "held_out_pairs.jsonl"
TRAINED_ON = "preference pairs"
# The keys of a pairs-trained model's ``silr.source`` that decide its training/held-out split (split_pairs).
PAIR_SPLIT_KEYS = ("pairs", "columns", "max_pairs", "held_out_fraction", "split_seed")


def held_out_mask(prompts: list[str], fraction: float, seed: int) -> np.ndarray:
    """True for the pairs whose prompt falls in the held-out part: a hash of (seed, prompt) below ``fraction``, so all
    pairs of one prompt go the same way and the split does not depend on the file's order."""
    def bucket(prompt: str) -> float:
        digest = hashlib.sha256(f"{seed}\0{prompt.strip()}".encode()).hexdigest()
        return int(digest[:12], 16) / 16**12

    return np.array([bucket(p) < fraction for p in prompts], dtype=bool)


def best_threshold(chosen: np.ndarray, rejected: np.ndarray) -> float:
    """The reward that best separates chosen (safe) from rejected (unsafe) answers; an answer is judged unsafe iff its
    reward is below it. It is the midpoint between the lowest reward called safe and the next lower one at the ROC point
    with the largest true-positive minus false-positive rate (not a training score itself: new answers near the
    boundary fall on either side of it evenly)."""
    scores = np.concatenate([chosen, rejected])
    labels = np.concatenate([np.ones(len(chosen)), np.zeros(len(rejected))])
    fpr, tpr, thresholds = roc_curve(labels, scores, drop_intermediate=False)  # thresholds: distinct scores, falling
    best = int(np.argmax((tpr - fpr)[1:])) + 1  # index 0 is the +inf "nothing is safe" point
    lowest_safe = thresholds[best]
    return float(lowest_safe if best + 1 == len(thresholds) else (lowest_safe + thresholds[best + 1]) / 2)


def subset(suite: PairSuite, keep: np.ndarray, name: str | None = None) -> PairSuite:
    """The pairs of ``suite`` at the indices or mask ``keep``."""
    index = np.flatnonzero(keep) if keep.dtype == bool else keep
    return PairSuite(name or suite.name, suite.source, suite.format, suite.rows_read, [suite.prompts[i] for i in index],
                     [suite.chosen[i] for i in index], [suite.rejected[i] for i in index])


def pairs_source(model_dir: str | os.PathLike) -> dict | None:
    """The ``silr.source`` of a reward model trained by this module, or None for any other model."""
    config_path = Path(model_dir) / "config.json"
    if not config_path.is_file():
        return None
    source = read_json(config_path).get(METADATA_KEY, {}).get("source", {})
    return source if source.get("trained_on") == TRAINED_ON else None


def pair_split(config: PairTrainingConfig) -> dict:
    """The :data:`PAIR_SPLIT_KEYS` of a model trained with ``config``, as its ``silr.source`` records them."""
    return {"pairs": str(Path(config.pairs).resolve()), "columns": dict(config.columns), "max_pairs": config.max_pairs,
            "held_out_fraction": config.held_out_fraction, "split_seed": config.seed}


def split_pairs(source: dict) -> tuple[PairSuite, PairSuite]:
    """The training and held-out pairs a pairs-trained model's ``source`` names, rebuilt from its file."""
    suite = load_pairs(source["pairs"], columns=source.get("columns") or None, max_pairs=source.get("max_pairs"),
                       seed=source["split_seed"])
    held = held_out_mask(suite.prompts, source["held_out_fraction"], source["split_seed"])
    return subset(suite, ~held), subset(suite, held, name=f"{suite.name} (held out from training)")


def training_prompts(source: dict, *, required: bool = False) -> list[str]:
    """The prompts a pairs-trained model saw (its training pairs'); when its pairs file is not here, [] with a warning,
    or FileNotFoundError if ``required`` (a model about to be trained on that file)."""
    if not Path(source["pairs"]).is_file():
        if required:
            raise FileNotFoundError(f"preference pairs {source['pairs']} not found; set evaluate.judge_pairs.pairs to "
                                    "hh_rlhf_harmless_test (with $SILR_DATA_DIR) or to a pairs file.")
        logger.warning("the pairs file %s this reward model trained on is not here: its training prompts cannot be "
                       "held out", source["pairs"])
        return []
    return split_pairs(source)[0].prompts


def held_out_pairs(source: dict, pairs_path: str | os.PathLike, *, max_pairs: int | None, seed: int) -> PairSuite | None:
    """The held-out pairs of ``pairs_path`` when the model trained on that same file (else None: evaluate on all);
    an empty suite when it held none out (``held_out_fraction`` 0: every pair was trained on)."""
    if Path(source["pairs"]).resolve() != Path(pairs_path).resolve():
        return None
    held = split_pairs(source)[1]
    return subset(held, sample_rows(len(held.prompts), max_pairs, seed))


def _tokenize(tokenizer, template: str, suite: PairSuite, max_length: int) -> tuple[list[dict], int]:
    """``chosen_ids``/``rejected_ids`` rows (truncated on the right); pairs that are identical once truncated (the
    answers differ only past ``max_length``, or not at all) carry no preference and are dropped (their count)."""
    def ids(prompt: str, answer: str) -> list[int]:
        return tokenizer(template.format(prompt=prompt, response=answer), truncation=True, max_length=max_length)[
            "input_ids"]

    rows = [{"chosen_ids": ids(p, c), "rejected_ids": ids(p, r)}
            for p, c, r in zip(suite.prompts, suite.chosen, suite.rejected, strict=True)]
    kept = [row for row in rows if row["chosen_ids"] != row["rejected_ids"]]
    return kept, len(rows) - len(kept)


def _reward_config(config: PairTrainingConfig, output_dir: Path):
    from trl import RewardConfig

    from refine import distributed

    return RewardConfig(
        output_dir=str(output_dir), num_train_epochs=config.num_train_epochs, learning_rate=config.learning_rate,
        per_device_train_batch_size=config.per_device_train_batch_size, warmup_steps=config.warmup_ratio,
        weight_decay=config.weight_decay, bf16=config.bf16, seed=config.seed, data_seed=config.seed,
        logging_steps=config.logging_steps, save_strategy="no", report_to=[], max_length=None,
        use_cpu=distributed.use_cpu(),
        # TRL turns activation checkpointing on by default (memory for ~30% more compute); silr's default is off.
        gradient_checkpointing=config.gradient_checkpointing,
    )


def _score(model, tokenizer, metadata: RewardMetadata, suite: PairSuite) -> tuple[np.ndarray, np.ndarray]:
    from reward.model import RewardModel

    scorer = RewardModel(model, tokenizer, metadata)
    return (scorer.score_pairs(suite.prompts, suite.chosen, progress=True),
            scorer.score_pairs(suite.prompts, suite.rejected, progress=True))


def _calibration(rewards: np.ndarray, n_pairs: int) -> Calibration:
    q05, q50, q95 = np.quantile(rewards, [0.05, 0.5, 0.95])
    return Calibration(mean=float(rewards.mean()), std=float(rewards.std()), n=int(rewards.size),
                       source=f"chosen and rejected answers of the {n_pairs} training pairs",
                       quantiles={"q05": float(q05), "q50": float(q50), "q95": float(q95)})


def _write_held_out(path: Path, suite: PairSuite) -> None:
    with path.open("w", encoding="utf-8") as handle:
        for prompt, chosen, rejected in zip(suite.prompts, suite.chosen, suite.rejected, strict=True):
            handle.write(json.dumps({"prompt": prompt, "chosen": chosen, "rejected": rejected}, ensure_ascii=False)
                         + "\n")


def train_pairs_reward(config: PairTrainingConfig, out_dir: str | os.PathLike, *, overwrite: bool = False) -> dict:
    """Train, calibrate and save a reward model on ``config.pairs`` (module docstring); returns its summary.

    Raises:
        FileNotFoundError: If the pairs file or the base model is missing.
        ValueError: On a bad setting, too few pairs to train on, or an output folder that may not be replaced.
    """
    import datasets
    from transformers import AutoModelForSequenceClassification, set_seed
    from trl import RewardTrainer

    out = Path(out_dir)
    check_output_folder(out, overwrite)
    started = time.perf_counter()
    split = pair_split(config)
    train, test = split_pairs(split)  # the split align rebuilds from the saved source
    location = locate_model(config.model_name_or_path, setting="--model")
    tokenizer = load_classifier_tokenizer(location.path, trust_remote_code=config.trust_remote_code)
    rows, ties = _tokenize(tokenizer, config.template, train, config.max_length)
    if len(rows) < 2:
        raise ValueError(f"{config.pairs}: only {len(rows)} training pair(s) differ within {config.max_length} tokens; "
                         "pass more pairs, a larger --max-length, or a smaller --held-out-fraction.")
    if ties:
        logger.warning("dropped %d of %d training pairs whose chosen and rejected texts are identical within %d tokens",
                       ties, len(train.prompts), config.max_length)
    set_seed(config.seed)
    with quiet_transformers():
        model = AutoModelForSequenceClassification.from_pretrained(
            location.path, num_labels=1, use_safetensors=True, trust_remote_code=config.trust_remote_code)
    model.config.pad_token_id = tokenizer.pad_token_id
    with atomic_dir(out) as tmp:
        trainer = RewardTrainer(model=model, args=_reward_config(config, tmp / "checkpoints"),
                                train_dataset=datasets.Dataset.from_list(rows), processing_class=tokenizer)
        trainer.train()
        model = trainer.model.float()
        provisional = RewardMetadata(max_length=config.max_length, template=config.template)
        chosen, rejected = _score(model, tokenizer, provisional, train)
        summary = {"pairs": split["pairs"], "train_pairs": len(rows), "ties_dropped": ties,
                   "held_out_pairs": len(test.prompts), "train_accuracy": float(np.mean(chosen > rejected))}
        if test.prompts:
            held_chosen, held_rejected = _score(model, tokenizer, provisional, test)
            summary["held_out_accuracy"] = float(np.mean(held_chosen > held_rejected))
        source = {"trained_on": TRAINED_ON, **split, "base_model": config.model_name_or_path, **summary}
        metadata = RewardMetadata(threshold=best_threshold(chosen, rejected),
                                  calibration=_calibration(np.concatenate([chosen, rejected]), len(train.prompts)),
                                  max_length=config.max_length, template=config.template, source=source)
        shutil.rmtree(tmp / "checkpoints", ignore_errors=True)
        save_reward_folder(model, tokenizer, metadata, tmp, card=_model_card(config, metadata))
        if test.prompts:
            _write_held_out(tmp / HELD_OUT_FILE, test)
    summary["seconds"] = round(time.perf_counter() - started, 1)
    summary["threshold"] = metadata.threshold
    return summary


def _model_card(config: PairTrainingConfig, metadata: RewardMetadata) -> str:
    source = metadata.source
    held = source.get("held_out_accuracy")
    lines = [
        "# Reward model trained on preference pairs (silr)", "",
        f"Base model `{config.model_name_or_path}`, fine-tuned with TRL's `RewardTrainer` (Bradley-Terry loss) on "
        f"{source['train_pairs']} pairs of `{source['pairs']}`, split by prompt ({config.held_out_fraction:.0%} of the "
        f"prompts held out, seed {config.seed}). {config.num_train_epochs:g} epochs, learning rate "
        f"{config.learning_rate:g}, {config.max_length} tokens of `{config.template!r}`.", "",
        "| | pairwise accuracy |", "|---|---|",
        f"| training pairs | {source['train_accuracy']:.3f} |",
        f"| held-out pairs ({source['held_out_pairs']}, `{HELD_OUT_FILE}`) | "
        + ("-" if held is None else f"{held:.3f}") + " |", "",
        "One logit, higher means safer (more like the chosen answers). Threshold "
        f"{metadata.threshold:.3f}: the reward that best separates the training pairs' chosen answers from their "
        "rejected ones (a pairwise model has no absolute zero). Evaluate it on your own answers with "
        "`python -m reward evaluate` before trusting it.",
    ]
    return "\n".join(lines) + "\n"
