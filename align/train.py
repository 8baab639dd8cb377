"""The training stage: the configured algorithm (``algorithm``: ppo, grpo or rloo) for every trained variant and seed.

:func:`run_training` writes the prompt split if missing, then trains each variant and seed with :mod:`align.ppo`
(PPO) or :mod:`align.grpo_rloo` (GRPO, RLOO) into ``<algorithm>/<variant>/seed_<s>/``: ``policy/``, ``metrics.csv``
(every metric TRL logged, one row per update), ``metrics.png`` and ``train.json``. Also the pieces both trainers
share: the metrics recorder, bf16 resolution, the reward model loader and the metrics writer.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

import pandas as pd
import torch
from transformers import TrainerCallback

from align.config import AlignConfig
from align.plots import plot_training_curves
from refine.distributed import use_cpu
from refine.rundir import atomic_path

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
    from reward.model import RewardModel

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


def train_variant(config: AlignConfig, variant: str, seed: int, *, config_path: str | None = None) -> Path:
    """Train (or find finished) one variant and seed with the configured algorithm; returns the stage folder."""
    if config.algorithm == "ppo":
        from align.ppo import train_variant as train
    else:
        from align.grpo_rloo import train_variant as train
    return train(config, variant, seed, config_path=config_path)


def run_training(config: AlignConfig, *, config_path: str | None = None) -> list[Path]:
    """The prompts stage (if missing), then the configured algorithm for every trained variant and seed."""
    from accelerate import PartialState
    from tqdm.auto import tqdm

    from align.policy import policy_folder_with_pad, resolve_policy_path
    from align.prompts import ensure_prompts

    state = PartialState()
    if state.is_main_process:  # one writer: converts a GGUF policy and builds the prompt split; the others read them
        path = resolve_policy_path(config.policy)
        if config.algorithm != "ppo" and config.trained_variants:
            policy_folder_with_pad(config.policy, path)
        ensure_prompts(config)
    state.wait_for_everyone()
    jobs = [(v, s) for v in config.trained_variants for s in config.ppo.seeds]
    folders = []
    label = f"{config.algorithm.upper()} runs"
    for variant, seed in tqdm(jobs, desc=label, unit="run", disable=not state.is_main_process or len(jobs) < 2):
        folders.append(train_variant(config, variant, seed, config_path=config_path))
    return folders
