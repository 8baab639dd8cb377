"""The RL algorithms `align` trains with, and the settings sections of GRPO and RLOO (PPO's is in ``config.py``).

``algorithm`` (top level of the align config) picks one:

- ``ppo``: ``trl.experimental.ppo.PPOTrainer`` (the default; TRL removed PPO in 1.13, silr pins 1.12.0), section
  ``ppo:``;
- ``grpo``: ``trl.GRPOTrainer`` (group-relative advantages, no value model), section ``grpo:``;
- ``rloo``: ``trl.RLOOTrainer`` (REINFORCE leave-one-out baseline, no value model), section ``rloo:``.

All three train the same policy (``policy:``, LoRA included) on the same prompts (``prompts/train.jsonl``) against the
same reward models, over the same seeds, and are evaluated and reported the same way. Five keys of the ``ppo:``
section are shared by every algorithm (:data:`SHARED_PPO_KEYS`: ``seed``, ``num_seeds``, ``normalize_rewards``,
``reward_models``, ``reward_higher_is_safer``); the others apply to PPO only. A config file may hold a section per
algorithm, so ``--algorithm`` switches between them; the sections of algorithms not selected are not used and are not
part of any stage's fingerprint. A key of a non-selected algorithm given on the command line is refused
(:func:`align.config.check_algorithm_overrides`): it would have no effect.

GRPO and RLOO settings are TRL's ``GRPOConfig`` / ``RLOOConfig`` fields under the same names, passed through
unchanged (``align/grpo_rloo.py``). Defaults are TRL's, except: ``num_train_epochs`` 1 (TRL 3: silr's PPO also makes
one pass over the prompts by default), ``gradient_checkpointing`` false (TRL true), ``logging_steps`` 1 (TRL 10),
``report_to`` none, ``bf16`` null (on where CUDA supports it; always off on CPU), ``max_steps`` null (TRL -1: the
epochs decide). Fixed by silr: ``save_strategy="no"``, ``use_cpu`` on machines without CUDA or under a ``use_cpu``
launch profile, ``seed`` = the run's seed, ``model_init_kwargs`` = the policy's dtype.

| silr key | TRL ``GRPOConfig`` / ``RLOOConfig`` field | what it does |
|---|---|---|
| ``grpo.learning_rate`` / ``rloo.learning_rate`` | ``learning_rate`` | AdamW learning rate |
| ``beta`` | ``beta`` | KL coefficient (GRPO: per-token KL in the loss; RLOO: sequence KL in the reward); 0: no reference model |
| ``num_generations`` | ``num_generations`` | completions per prompt (the group) |
| ``max_completion_length`` | ``max_completion_length`` | tokens generated per completion |
| ``temperature``, ``top_p`` | ``temperature``, ``top_p`` | sampling of completions |
| ``per_device_train_batch_size`` | ``per_device_train_batch_size`` | completions (not prompts) per process per step |
| ``gradient_accumulation_steps`` | ``gradient_accumulation_steps`` | micro-batches per optimizer update |
| ``num_iterations`` | ``num_iterations`` | optimizer passes over each generation batch (mu) |
| ``epsilon`` | ``epsilon`` | policy-ratio clip range |
| ``max_steps`` | ``max_steps`` (null → -1) | optimizer updates in total; null: ``num_train_epochs`` decides |
| ``num_train_epochs`` | ``num_train_epochs`` | passes over the training prompts |
| ``mask_truncated_completions`` | ``mask_truncated_completions`` | drop completions without EOS from the loss |
| ``gradient_checkpointing`` | ``activation_checkpointing`` (its transformers 5.24 name) | recompute activations |
| ``bf16`` | ``bf16`` | bf16 mixed precision (null: auto) |
| ``use_vllm``, ``vllm_mode``, ``vllm_gpu_memory_utilization``, ``vllm_server_base_url`` | same | vLLM generation (GPU) |
| ``logging_steps``, ``report_to`` | same | TRL's metric logging |
| ``grpo.loss_type``, ``grpo.scale_rewards`` | ``loss_type``, ``scale_rewards`` | GRPO only |
| ``rloo.normalize_advantages``, ``rloo.reward_clip_range`` | ``normalize_advantages``, ``reward_clip_range`` | RLOO only |
| ``ppo.seed`` (+ i for run i), ``ppo.num_seeds`` | ``seed`` | shared by every algorithm |
| ``ppo.normalize_rewards`` | (the reward function) | z-normalise rewards with the export's calibration |
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

ALGORITHMS = ("ppo", "grpo", "rloo")
# Keys of the ppo section that every algorithm uses: what is compared (seeds, rewards) must not differ by algorithm.
SHARED_PPO_KEYS = ("seed", "num_seeds", "normalize_rewards", "reward_models", "reward_higher_is_safer")
# Settings that change only what is logged, so they stay out of a training stage's fingerprint.
LOGGING_KEYS = ("logging_steps", "report_to")


@dataclass
class GroupSettings:
    """Settings GRPO and RLOO share: TRL's GRPOConfig / RLOOConfig fields under the same names (trl 1.12.0)."""

    learning_rate: float = field(default=1e-6, metadata={"help": "AdamW learning rate of the policy."})
    beta: float = field(
        default=0.0, metadata={"help": "KL coefficient to the SFT policy (0: no reference model is loaded)."}
    )
    num_generations: int = field(
        default=8, metadata={"help": "Completions sampled per prompt (one group; at least 2)."}
    )
    max_completion_length: int = field(default=512, metadata={"help": "Tokens generated per completion (max)."})
    temperature: float = field(default=1.0, metadata={"help": "Sampling temperature of completions."})
    top_p: float = field(default=1.0, metadata={"help": "Nucleus sampling mass, in (0, 1] (1: off)."})
    per_device_train_batch_size: int = field(
        default=8,
        metadata={"help": "Completions (not prompts) per process per step; x processes x gradient_accumulation_steps "
                  "must be a multiple of num_generations."},
    )
    gradient_accumulation_steps: int = field(default=1, metadata={"help": "Micro-batches per optimizer update."})
    num_iterations: int = field(
        default=1, metadata={"help": "Optimizer passes over each generation batch (mu in the GRPO paper)."}
    )
    epsilon: float = field(default=0.2, metadata={"help": "Policy-ratio clip range."})
    max_steps: int | None = field(
        default=None, metadata={"help": "Optimizer updates in total (null: num_train_epochs passes over the prompts)."}
    )
    num_train_epochs: float = field(
        default=1.0, metadata={"help": "Passes over the training prompts when max_steps is null (TRL's default: 3)."}
    )
    mask_truncated_completions: bool = field(
        default=False, metadata={"help": "Leave completions that hit max_completion_length without EOS out of the "
                                 "loss."}
    )
    gradient_checkpointing: bool = field(
        default=False, metadata={"help": "Recompute activations in backward: less memory, more time (TRL: true)."}
    )
    bf16: bool | None = field(
        default=None, metadata={"help": "bf16 mixed precision (null: on where CUDA supports it, always off on CPU)."}
    )
    use_vllm: bool = field(
        default=False,
        metadata={"help": "Generate completions with vLLM (GPU only; needs the vllm package): see "
                  "configs/align/grpo_gpu.yaml."},
    )
    vllm_mode: Literal["colocate", "server"] = field(
        default="colocate",
        metadata={"help": "colocate: vLLM runs in the training processes and shares their GPUs. server: a separate "
                  "`trl vllm-serve` process (vllm_server_base_url)."},
    )
    vllm_gpu_memory_utilization: float = field(
        default=0.3, metadata={"help": "Share of GPU memory vLLM may take (colocate mode)."}
    )
    vllm_server_base_url: str | None = field(
        default=None, metadata={"help": "URL of the vLLM server (server mode; null: http://0.0.0.0:8000)."}
    )
    logging_steps: int = field(default=1, metadata={"help": "Log TRL metrics every this many updates."})
    report_to: str = field(default="none", metadata={"help": "Trainer report_to (none, tensorboard, wandb, ...)."})

    def __post_init__(self):
        for name in ("learning_rate", "num_generations", "max_completion_length", "temperature",
                     "per_device_train_batch_size", "gradient_accumulation_steps", "num_iterations", "epsilon",
                     "num_train_epochs", "logging_steps"):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name}={getattr(self, name)} must be positive.")
        if self.num_generations < 2:
            raise ValueError(f"num_generations={self.num_generations} must be at least 2: the advantage of a "
                             "completion is measured against the other completions of its prompt.")
        if self.beta < 0:
            raise ValueError(f"beta={self.beta} must be >= 0 (0: no KL penalty).")
        if not 0 < self.top_p <= 1:
            raise ValueError(f"top_p={self.top_p} must lie in (0, 1].")
        if self.max_steps is not None and self.max_steps < 1:
            raise ValueError(f"max_steps={self.max_steps} must be positive or null.")
        if not 0 < self.vllm_gpu_memory_utilization <= 1:
            raise ValueError(f"vllm_gpu_memory_utilization={self.vllm_gpu_memory_utilization} must lie in (0, 1].")


@dataclass
class GRPOSettings(GroupSettings):
    """TRL GRPO (``trl.GRPOTrainer``, trl 1.12.0) settings, passed to ``GRPOConfig`` under the same names."""

    loss_type: Literal["grpo", "dr_grpo", "dapo", "bnpo", "cispo", "sapo"] = field(
        default="dapo",
        metadata={"help": "How token losses are aggregated: dapo (TRL's default: over the active tokens of the "
                  "global batch), grpo (per sequence, length-biased), dr_grpo, bnpo, cispo, sapo."},
    )
    scale_rewards: Literal["group", "batch", "none"] = field(
        default="group",
        metadata={"help": "Advantages divided by the reward std of the group (group), of the batch, or not (none)."},
    )


@dataclass
class RLOOSettings(GroupSettings):
    """TRL RLOO (``trl.RLOOTrainer``, trl 1.12.0) settings, passed to ``RLOOConfig`` under the same names."""

    beta: float = field(
        default=0.05, metadata={"help": "KL coefficient: beta x the sequence's KL to the SFT policy is subtracted from "
                                "its reward (0: no reference model is loaded)."}
    )
    num_generations: int = field(
        default=2, metadata={"help": "Completions sampled per prompt (at least 2: each one's baseline is the mean "
                             "reward of the others)."}
    )
    normalize_advantages: bool = field(
        default=False, metadata={"help": "Normalise advantages over each generation batch (mean 0, std 1)."}
    )
    reward_clip_range: list[float] | None = field(
        default=None, metadata={"help": "[min, max] the rewards are clipped to (null: no clipping)."}
    )

    def __post_init__(self):
        super().__post_init__()
        clip = self.reward_clip_range
        if clip is not None and (len(clip) != 2 or not clip[0] < clip[1]):
            raise ValueError(f"reward_clip_range={clip} must be [min, max] with min < max, or null.")
