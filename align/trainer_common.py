"""What PPO (:mod:`align.ppo`), GRPO and RLOO (:mod:`align.grpo_rloo`) share: the curves each algorithm plots, the
stage set-up (:func:`open_training_stage`), the metrics recorder and writer, bf16 resolution and the reward model
loader."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import torch
from transformers import TrainerCallback

from align.config import AlignConfig
from align.plots import plot_training_curves
from align.stages import (
    export_fingerprint,
    is_done,
    require_stage,
    reward_source,
    run_dir,
    train_fingerprint,
    training_stage,
)
from refine.distributed import use_cpu
from refine.rundir import RunDir, atomic_path, read_jsonl
from reward.model import RewardModel

logger = logging.getLogger(__name__)

# Metrics plotted per algorithm: (TRL's key, axis label). PPO logs the KL summed over the response, GRPO and RLOO the
# mean over completion tokens (GRPO: the k3 estimator in its loss; RLOO: k1, the one subtracted from the reward).
CURVES = {
    "ppo": [("objective/scores", "reward score (training reward)"), ("objective/kl", "KL to SFT (sum over tokens)")],
    "grpo": [("reward", "mean reward of the completions"), ("kl", "KL to SFT (mean per token)"),
             ("completions/mean_length", "completion length (tokens)")],
    "rloo": [("reward", "mean reward of the completions"), ("kl", "KL to SFT (mean per token)"),
             ("completions/mean_length", "completion length (tokens)")],
}
TRAINER_NAMES = {"ppo": "trl.experimental.ppo.PPOTrainer", "grpo": "trl.GRPOTrainer", "rloo": "trl.RLOOTrainer"}


class MetricsRecorder(TrainerCallback):
    """Keeps every dict TRL logs, with the update (``state.global_step``) it belongs to."""

    def __init__(self):
        self.rows: list[dict] = []

    def on_log(self, args, state, control, logs=None, **kwargs):
        if logs:
            self.rows.append({"step": state.global_step, **{k: v for k, v in logs.items() if _is_number(v)}})


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def use_bf16(wanted: bool | None, key: str) -> bool:
    """bf16 setting ``key`` (true, false or null: wherever CUDA supports it) → the value for TRL's config."""
    available = not use_cpu() and torch.cuda.is_bf16_supported()  # not under a use_cpu launch profile
    if wanted and not available:
        raise ValueError(f"{key}=true needs a GPU with bf16 support; set {key} to null or false on CPU.")
    return available if wanted is None else wanted


def load_reward(path: Path, config: AlignConfig, *, device: str = "cpu"):
    """A variant's training reward, normalised as ``ppo.normalize_rewards`` says (for every algorithm)."""
    return RewardModel.from_pretrained(path, normalize=config.ppo.normalize_rewards, device=device,
                                       higher_is_safer=config.ppo.reward_higher_is_safer)


def write_metrics(folder: Path, rows: list[dict], title: str, curves: Sequence[tuple[str, str]]) -> pd.DataFrame:
    """``metrics.csv`` (one row per update, the last value logged for it) and ``metrics.png`` of ``curves``."""
    frame = pd.DataFrame(rows)
    if frame.empty:
        frame = pd.DataFrame(columns=["step", *(key for key, _ in curves)])
    frame = frame.groupby("step", as_index=False).last() if "step" in frame else frame
    with atomic_path(folder / "metrics.csv") as tmp:
        frame.to_csv(tmp, index=False)
    plot_training_curves(folder / "metrics.png", {title: frame}, curves, title=title)
    return frame


def final_values(frame: pd.DataFrame, curves: Sequence[tuple[str, str]]) -> dict[str, float]:
    """The last logged value of each plotted metric that was logged."""
    final = {}
    for key, _ in curves:
        if key in frame and frame[key].notna().any():
            final[key] = float(frame[key].dropna().iloc[-1])
    return final


@dataclass
class TrainingStage:
    """A training stage to run: where it goes, what decides it, its reward model and its training prompts."""

    run: RunDir
    name: str  # <algorithm>/<variant>/seed_<s>
    fingerprint: dict
    done: bool  # finished with this config: nothing to train (reward_path and prompts are not read)
    reward_path: Path | None = None
    prompts: list[str] | None = None

    @property
    def folder(self) -> Path:
        return self.run.stage(self.name)

    @property
    def partial(self) -> Path:
        """Where the stage is built; renamed to :attr:`folder` once complete."""
        return self.folder.parent / f".{self.folder.name}.partial"


def open_training_stage(config: AlignConfig, variant: str, seed: int, *, config_path: str | None = None
                        ) -> TrainingStage:
    """The stage of one variant and seed; ``done`` if it is finished with this config (a changed one is refused).

    Otherwise also checks that the variant's reward model was exported with this config (unless given in
    ``ppo.reward_models``) and reads the prompt split's training prompts.
    """
    run = run_dir(config)
    name, fingerprint = training_stage(config, variant, seed), train_fingerprint(config, variant, seed)
    if is_done(run, name, fingerprint, overwrite=config.overwrite_output_dir):
        logger.info("%s: done already (same config), skipped", name)
        return TrainingStage(run, name, fingerprint, done=True)
    reward_path, _ = reward_source(config, variant)
    if variant not in config.ppo.reward_models:
        require_stage(run, f"reward/{reward_path.parent.name}", export_fingerprint(config, reward_path.parent.name),
                      config_path=config_path)
    prompts = [row["prompt"] for row in read_jsonl(run.stage("prompts") / "train.jsonl")]
    return TrainingStage(run, name, fingerprint, done=False, reward_path=reward_path, prompts=prompts)
