"""The whole pipeline: prompts → (annotate → refine → export) per refine variant (and the judge trained on preference
pairs, with ``evaluate.judge: pairs``) → reward evaluation per training reward and the judge → RL (the configured
algorithm: PPO, GRPO or RLOO) per variant and seed → evaluate → report.

Each stage is skipped when its output exists with the same config, refused when it exists with another (unless
``overwrite_output_dir``), and timed; the timings of every invocation go to ``<run>/pipeline.json`` and the log. The prompt split runs
first because it is cheap and can refuse the run (training prompts that overlap the evaluation set). The reward
evaluations run before training, so a reward that cannot tell answers apart is visible before RL spends time on it.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from pathlib import Path

from tqdm.auto import tqdm

from align.config import JUDGE_PAIRS, STAGES, AlignConfig
from align.evaluate import run_evaluate
from align.prompts import ensure_prompts
from align.report import run_report
from align.reward_eval import evaluate_reward, reward_eval_finished
from align.stages import (
    JUDGE_PAIRS_STAGE,
    building,
    evaluate_fingerprint,
    export_fingerprint,
    is_done,
    judge_pairs_fingerprint,
    judge_pairs_training,
    needed_refine_variants,
    prompts_fingerprint,
    refine_variant_config,
    report_fingerprint,
    reward_eval_fingerprint,
    reward_targets,
    run_dir,
    stage_name,
    train_fingerprint,
    training_stage,
)
from align.train import train_variant
from refine.config_loading import config_to_dict
from refine.loop import annotate_fingerprint, refine_fingerprint, run_refine
from refine.rundir import RunDir, read_json, write_json, write_yaml
from reward.export import export_reward_model
from reward.pairs_training import train_pairs_reward

logger = logging.getLogger(__name__)


def refine_and_export(config: AlignConfig, variant: str, *, export: bool = True) -> None:
    """Refine (resumable) and export one variant's classifier as a reward model (nothing if already exported)."""
    run, name, stage_config = run_dir(config), f"reward/{variant}", export_fingerprint(config, variant)
    if is_done(run, name, stage_config, overwrite=config.overwrite_output_dir):
        return
    refine_config = refine_variant_config(config, variant)
    run_refine(refine_config)
    if export:
        with building(run, name, stage_config) as tmp:
            export_reward_model(refine_config.output_dir, tmp / "model", iteration=config.export_iteration,
                                trust_remote_code=refine_config.classifier.trust_remote_code)


def train_pairs_judge(config: AlignConfig) -> None:
    """Train the judge on preference pairs (``evaluate.judge: pairs``; nothing if it is already trained)."""
    run, stage_config = run_dir(config), judge_pairs_fingerprint(config)
    if is_done(run, JUDGE_PAIRS_STAGE, stage_config, overwrite=config.overwrite_output_dir):
        return
    with building(run, JUDGE_PAIRS_STAGE, stage_config) as tmp:
        summary = train_pairs_reward(judge_pairs_training(config), tmp / "model")
    logger.info("judge trained on %d preference pairs of %s: held-out pairwise accuracy %s", summary["train_pairs"],
                summary["pairs"], f"{summary['held_out_accuracy']:.3f}" if "held_out_accuracy" in summary else "-")


def plan(config: AlignConfig, config_path: str | None) -> list[tuple[str, str, Callable[[], bool], Callable]]:
    """``(stage kind, label, finished, run)`` in order, cut after ``stop_after``; ``finished()`` is checked first."""
    run, overwrite = run_dir(config), config.overwrite_output_dir

    def done(name: str, stage_config: dict) -> Callable[[], bool]:
        return lambda: is_done(run, name, stage_config, overwrite=overwrite)

    steps = [("prompts", "prompts", done("prompts", prompts_fingerprint(config)), lambda: ensure_prompts(config))]
    for variant in needed_refine_variants(config):
        export = config.stop_after != "refine"
        finished = done(f"reward/{variant}", export_fingerprint(config, variant))
        steps.append(("refine", f"refine+export {variant}", finished,
                      lambda variant=variant, export=export: refine_and_export(config, variant, export=export)))
    if config.evaluate.judge == JUDGE_PAIRS:
        steps.append(("export", "judge: train on pairs", done(JUDGE_PAIRS_STAGE, judge_pairs_fingerprint(config)),
                      lambda: train_pairs_judge(config)))
    for target in reward_targets(config):
        steps.append(("reward_eval", stage_name("reward_eval", target.name),
                      lambda t=target: reward_eval_finished(config, t),
                      lambda t=target: evaluate_reward(config, t, config_path=config_path)))
    for variant in config.trained_variants:
        for seed in config.ppo.seeds:
            name = training_stage(config, variant, seed)
            steps.append(("train", name, done(name, train_fingerprint(config, variant, seed)),
                          lambda v=variant, s=seed: train_variant(config, v, s, config_path=config_path)))
    evaluations = [done(stage_name("evaluate", v, s), evaluate_fingerprint(config, v, s))
                   for v in config.variants for s in config.ppo.seeds]
    steps.append(("evaluate", "evaluate", lambda: all(check() for check in evaluations),
                  lambda: run_evaluate(config, config_path=config_path)))
    steps.append(("report", "report", done("report", report_fingerprint(config)),
                  lambda: run_report(config, config_path=config_path)))
    last = STAGES.index(config.stop_after)
    return [step for step in steps if step[0] == "prompts" or STAGES.index(step[0]) <= last]


def preflight(config: AlignConfig) -> None:
    """Refuse a changed config before any work: every planned stage that exists must match (or be replaceable)."""
    run, overwrite = run_dir(config), config.overwrite_output_dir
    last = STAGES.index(config.stop_after)
    checks = [("prompts", prompts_fingerprint(config))]
    for variant in needed_refine_variants(config):
        refine_config = refine_variant_config(config, variant)
        refine_run = RunDir(refine_config.output_dir)
        refine_run.check_stage("annotate", annotate_fingerprint(refine_config), overwrite=overwrite)
        refine_run.check_stage("refine", refine_fingerprint(refine_config), overwrite=overwrite)
        if last >= STAGES.index("export"):
            checks.append((f"reward/{variant}", export_fingerprint(config, variant)))
    if last >= STAGES.index("export") and config.evaluate.judge == JUDGE_PAIRS:
        checks.append((JUDGE_PAIRS_STAGE, judge_pairs_fingerprint(config)))
    if last >= STAGES.index("reward_eval"):
        checks += [(stage_name("reward_eval", t.name), reward_eval_fingerprint(config, t)) for t in reward_targets(config)]
    jobs = [(v, s) for v in config.variants for s in config.ppo.seeds]
    if last >= STAGES.index("train"):
        checks += [(training_stage(config, v, s), train_fingerprint(config, v, s)) for v, s in jobs if v in
                   config.trained_variants]
    if last >= STAGES.index("evaluate"):
        checks += [(stage_name("evaluate", v, s), evaluate_fingerprint(config, v, s)) for v, s in jobs]
    if last >= STAGES.index("report"):
        checks.append(("report", report_fingerprint(config)))
    for name, stage_config in checks:
        is_done(run, name, stage_config, overwrite=overwrite)


def run_pipeline(config: AlignConfig, *, config_path: str | None = None) -> Path:
    """Run every stage (skipping finished ones); returns the run directory."""
    run = run_dir(config)
    preflight(config)
    steps = plan(config, config_path)
    timings = []
    started = time.strftime("%Y-%m-%dT%H:%M:%S")
    total_start = time.perf_counter()
    with tqdm(steps, desc="pipeline", unit="stage") as bar:
        for kind, label, finished, step in bar:
            bar.set_postfix_str(label)
            start = time.perf_counter()
            status = "skipped" if finished() else "done"
            if status == "done":
                step()
            seconds = time.perf_counter() - start
            timings.append({"stage": label, "kind": kind, "seconds": round(seconds, 2), "status": status})
            logger.info("stage %s: %s in %.1fs", label, status, seconds)
            if kind == "prompts":
                write_yaml(run.root / "config.yaml", config_to_dict(config))
    total = time.perf_counter() - total_start
    record = {"started": started, "stages": timings, "total_seconds": round(total, 2), "stop_after": config.stop_after}
    history_path = run.root / "pipeline.json"
    history = read_json(history_path).get("runs", []) if history_path.is_file() else []
    write_json(history_path, {"runs": [*history, record]})  # every invocation, so a resumed run keeps the timings
    logger.info("pipeline: %d stages in %.1fs (%s)", len(timings), total,
                ", ".join(f"{t['stage']} {t['seconds']:.0f}s" for t in timings))
    return run.root
