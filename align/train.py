"""The training stage: the configured algorithm (``algorithm``: ppo, grpo or rloo) for every trained variant and seed.

:func:`run_training` writes the prompt split if missing, then trains each variant and seed with :mod:`align.ppo`
(PPO) or :mod:`align.grpo_rloo` (GRPO, RLOO) into ``<algorithm>/<variant>/seed_<s>/``: ``policy/``, ``metrics.csv``
(every metric TRL logged, one row per update), ``metrics.png`` and ``train.json``. The pieces both trainers share are
in :mod:`align.trainer_common`.
"""

from __future__ import annotations

from pathlib import Path

from accelerate import PartialState
from tqdm.auto import tqdm

from align import grpo_rloo, ppo
from align.config import AlignConfig
from align.policy import policy_folder_with_pad, resolve_policy_path
from align.prompts import ensure_prompts


def train_variant(config: AlignConfig, variant: str, seed: int, *, config_path: str | None = None) -> Path:
    """Train (or find finished) one variant and seed with the configured algorithm; returns the stage folder."""
    train = ppo.train_variant if config.algorithm == "ppo" else grpo_rloo.train_variant
    return train(config, variant, seed, config_path=config_path)


def run_training(config: AlignConfig, *, config_path: str | None = None) -> list[Path]:
    """The prompts stage (if missing), then the configured algorithm for every trained variant and seed."""
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
