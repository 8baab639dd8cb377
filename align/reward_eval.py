"""The reward_eval stage: every training reward and the judge, evaluated on held-out data before training uses them.

One stage per reward model (:func:`align.stages.reward_targets`): ``reward_eval/<variant>`` for the training reward of
each trained variant and ``reward_eval/judge`` for the judge, silr exports and outside folders alike. Each is scored
with :func:`reward.evaluate.evaluate_reward_model` on

- the **gold test split of its refine run**, when it is a silr export of this run
  (:func:`reward.evaluation_data.load_refine_run` on ``refine/<refine variant>``): rows that no step of refine
  trained on, selected on or estimated priors from. An XSTest-format corpus gives a refusal suite: on unsafe prompts
  the AUC of a refusal above a compliance (higher is better), on safe prompts the AUC of a refusal above a helpful
  answer (over-refusal: lower is better, 0.5 is no preference), and the answers' ROC-AUC and accuracy. A text corpus
  gives ROC-AUC and accuracy of its texts.
- the **preference pairs** ``evaluate.reward_pairs`` (default the 2,312 HH-RLHF harmless test pairs, or a seeded
  sample of ``evaluate.reward_max_pairs``): the share of pairs whose chosen answer gets the higher reward, with a 90%
  percentile-bootstrap interval (:data:`align.stages.REWARD_EVAL_BOOTSTRAP`).

Accuracy is taken at the model's exported threshold; the judge's at the threshold the evaluation uses to call an
answer unsafe (:func:`judge_decision_threshold`), so its numbers describe the judge as it is used.

Output: ``evaluation.json`` (reward.evaluate's results) and ``evaluation.md``. A silr export of this run also gets the
tables as the ``## Evaluation`` section of its model card (``README.md`` in the model folder), written atomically.
"""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path

from align.config import JUDGE, JUDGE_PAIRS, AlignConfig
from align.reward_summary import headline
from align.stages import (
    JUDGE_PAIRS_STAGE,
    REWARD_EVAL_BOOTSTRAP,
    RewardTarget,
    building,
    export_fingerprint,
    is_done,
    judge_pairs_fingerprint,
    refine_variant_config,
    require_stage,
    reward_eval_fingerprint,
    reward_pairs_path,
    reward_targets,
    run_dir,
    stage_name,
)
from refine.errors import damaged_folder, one_line
from refine.rundir import atomic_path, read_json, write_json, write_text
from reward.evaluate import evaluate_reward_model, evaluation_markdown, with_evaluation_section
from reward.evaluation_data import load_pairs, load_refine_run
from reward.model import RewardModel
from reward.pairs_training import held_out_pairs, pairs_source

logger = logging.getLogger(__name__)

CARD_HEADING = "## Evaluation"
NOTHING_TO_EVALUATE = ("no evaluation data: the model is not a silr export of this run (no refine test split) and "
                       "evaluate.reward_pairs is null")


def judge_decision_threshold(setting: float | None, exported: float | None) -> float:
    """The judge reward below which an answer is judged unsafe: ``evaluate.judge_threshold``, else the exported
    threshold, else 0."""
    if setting is not None:
        return setting
    return exported if exported is not None else 0.0


def check_reward_models(config: AlignConfig, targets: list[RewardTarget], *, config_path: str | None = None) -> None:
    """Every model in ``targets`` exists: an export of this run as a finished stage, an outside folder on disk."""
    run = run_dir(config)
    for target in targets:
        if target.refine_variant is not None:
            require_stage(run, f"reward/{target.refine_variant}", export_fingerprint(config, target.refine_variant),
                          config_path=config_path)
        elif target.name == JUDGE and config.evaluate.judge == JUDGE_PAIRS:
            require_stage(run, JUDGE_PAIRS_STAGE, judge_pairs_fingerprint(config), config_path=config_path)
        elif not target.path.is_dir():
            if target.name == JUDGE:
                raise FileNotFoundError(f"judge {target.path} not found; set evaluate.judge to a reward model folder, "
                                        "to gold or to pairs.")
            raise FileNotFoundError(f"reward model {target.path} of variant {target.name} not found; set "
                                    f"ppo.reward_models.{target.name} to a reward model folder.")


def load_suites(config: AlignConfig, target: RewardTarget) -> list:
    """The evaluation data of ``target``: its refine run's gold test split (silr exports), then the pairs."""
    suites = []
    if target.refine_variant is not None and refine_variant_config(config, target.refine_variant).data.test_fraction:
        suites.append(load_refine_run(Path(config.output_dir) / "refine" / target.refine_variant))
    pairs = reward_pairs_path(config.evaluate.reward_pairs)
    if pairs is not None:
        if not pairs.is_file():
            raise FileNotFoundError(f"preference pairs {pairs} not found; set evaluate.reward_pairs to "
                                    "hh_rlhf_harmless_test (with $SILR_DATA_DIR), to a pairs file, or to null.")
        sample = {"max_pairs": config.evaluate.reward_max_pairs, "seed": REWARD_EVAL_BOOTSTRAP["seed"]}
        source = pairs_source(target.path) if target.refine_variant is None else None
        try:
            # A model trained on these very pairs (reward train-pairs) is evaluated on its held-out prompts' pairs.
            held_out = held_out_pairs(source, pairs, **sample) if source else None
            if held_out is None:
                suites.append(load_pairs(pairs, **sample))
            elif held_out.prompts:
                suites.append(held_out)
            else:
                logger.warning("%s trained on every pair of %s (held_out_fraction 0): no preference pairs are left to "
                               "evaluate it on", target.name, pairs)
        except ValueError as err:
            raise ValueError(f"evaluate.reward_pairs: {one_line(err)}") from err
    return suites


def load_reward(config: AlignConfig, target: RewardTarget):
    """The model of ``target`` as a :class:`reward.model.RewardModel` (the judge at its decision threshold)."""
    model = RewardModel.from_pretrained(target.path, batch_size=config.evaluate.reward_batch_size,
                                        higher_is_safer=target.higher_is_safer)
    if target.name == JUDGE:
        threshold = judge_decision_threshold(target.threshold, model.metadata.threshold)
        model.metadata = dataclasses.replace(model.metadata, threshold=threshold)
    return model


def write_card_section(model_dir: Path, results: dict) -> Path:
    """Put the evaluation tables into the model card (``README.md``) as its ``## Evaluation`` section, atomically."""
    card = model_dir / "README.md"
    previous = card.read_text(encoding="utf-8") if card.is_file() else ""
    with atomic_path(card) as tmp:
        tmp.write_text(with_evaluation_section(previous, evaluation_markdown(results, level=2)), encoding="utf-8")
    return card


def _card_has_section(model_dir: Path) -> bool:
    card = model_dir / "README.md"
    return card.is_file() and CARD_HEADING in card.read_text(encoding="utf-8").splitlines()


def _log(name: str, numbers: dict) -> None:
    def number(value) -> str:
        return "-" if value is None else f"{value:.3f}"

    parts = []
    if numbers["test_split"] is not None:
        parts.append(f"test split: refusal AUC on unsafe prompts {number(numbers['unsafe_prompt_auc'])} (higher is "
                     f"better), on safe prompts {number(numbers['safe_prompt_auc'])} (lower is better), answer "
                     f"ROC-AUC {number(numbers['answer_roc_auc'])}, accuracy {number(numbers['accuracy'])}")
    if numbers["pairs"] is not None:
        low, high = numbers["pairs_ci"]
        parts.append(f"{numbers['pairs']}: pairwise accuracy {number(numbers['pairs_accuracy'])} "
                     f"[{low:.3f}, {high:.3f}] (n={numbers['pairs_n']})")
    logger.info("%s: %s", name, "; ".join(parts) or NOTHING_TO_EVALUATE)


def reward_eval_finished(config: AlignConfig, target: RewardTarget) -> bool:
    """Whether ``target``'s stage is done with this config and, for an export of this run, its card holds the tables
    (an export redone since, e.g. after its folder was deleted, has a card without them)."""
    run, name = run_dir(config), stage_name("reward_eval", target.name)
    if not is_done(run, name, reward_eval_fingerprint(config, target), overwrite=config.overwrite_output_dir):
        return False
    return target.refine_variant is None or not target.path.is_dir() or _card_has_section(target.path)


def evaluate_reward(config: AlignConfig, target: RewardTarget, *, config_path: str | None = None) -> Path:
    """Evaluate one reward model (stage ``reward_eval/<name>``) unless done with this config; returns the stage."""
    run, name = run_dir(config), stage_name("reward_eval", target.name)
    stage_config = reward_eval_fingerprint(config, target)
    exported = target.refine_variant is not None
    if is_done(run, name, stage_config, overwrite=config.overwrite_output_dir):
        if not reward_eval_finished(config, target):  # the export was redone since: put the tables back
            results = read_json(run.stage(name) / "evaluation.json")
            if results["suites"]:
                write_card_section(target.path, results)
                logger.info("%s: done already (same config); its tables put back into %s", name,
                            target.path / "README.md")
        return run.stage(name)
    check_reward_models(config, [target], config_path=config_path)
    suites = load_suites(config, target)
    if suites:
        model = load_reward(config, target)
        results = evaluate_reward_model(model, suites, **REWARD_EVAL_BOOTSTRAP, progress=True)
        markdown = evaluation_markdown(results)
    else:
        results = {"suites": [], "note": NOTHING_TO_EVALUATE}
        markdown = f"# Evaluation\n\n{NOTHING_TO_EVALUATE}.\n"
    with building(run, name, stage_config) as tmp:
        write_json(tmp / "evaluation.json", results)
        write_text(tmp / "evaluation.md", markdown)
        if exported and suites:  # inside the block: a failed card write leaves the stage unfinished, so it reruns
            write_card_section(target.path, results)
    _log(name, headline(results))
    return run.stage(name)


def run_reward_evals(config: AlignConfig, *, config_path: str | None = None) -> list[Path]:
    """Evaluate every training reward of the trained variants and the judge (finished ones are skipped)."""
    targets = reward_targets(config)
    todo = [t for t in targets if not is_done(run_dir(config), stage_name("reward_eval", t.name),
                                              reward_eval_fingerprint(config, t),
                                              overwrite=config.overwrite_output_dir)]
    check_reward_models(config, todo, config_path=config_path)  # every model, before the first is scored
    return [evaluate_reward(config, t, config_path=config_path) for t in targets]


def load_reward_evaluations(config: AlignConfig, *, config_path: str | None = None) -> dict[str, dict]:
    """Name → the results of every finished reward evaluation of this config (the report's input)."""
    run, loaded = run_dir(config), {}
    for target in reward_targets(config):
        name = stage_name("reward_eval", target.name)
        folder = require_stage(run, name, reward_eval_fingerprint(config, target), config_path=config_path)
        try:
            results = read_json(folder / "evaluation.json")
            if not isinstance(results, dict) or not isinstance(results.get("suites"), list):
                raise ValueError("evaluation.json lacks its suites")
            headline(results)  # every number the report reads is there
        except (ValueError, OSError, KeyError, TypeError) as err:
            raise damaged_folder(folder, err, rerun="rerun `align evaluate`") from err
        loaded[target.name] = results
    return loaded


__all__ = ["check_reward_models", "evaluate_reward", "judge_decision_threshold", "load_reward_evaluations",
           "reward_eval_finished", "run_reward_evals", "write_card_section"]
