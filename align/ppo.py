"""The PPO stage: TRL's PPOTrainer (trl.experimental.ppo, trl 1.12.0) configured, not forked.

For each variant and seed: the SFT policy (optionally with LoRA), a reference copy (none with LoRA: TRL disables the
adapter), a value model on the policy's backbone, and the variant's reward model wrapped in
:class:`reward.adapters.PolicyTokenRewardModel` (PPO calls reward models with the *policy's* token ids; the adapter
decodes them and rebuilds the reward template, or passes ids through when the vocabularies match). TRL's metrics
(``objective/scores``, ``objective/kl``, ...) are recorded by a callback into ``metrics.csv`` and ``metrics.png``.

Each run is built in ``ppo/<variant>/.seed_<s>.partial`` and renamed to ``ppo/<variant>/seed_<s>`` when complete,
so a finished run (its ``policy/`` folder and ``stage.json``) is never redone and an interrupted one leaves nothing
that looks finished. Runs under ``accelerate launch`` (several processes, or DeepSpeed): every process trains, the
main process writes.
"""

from __future__ import annotations

import logging
import os
import shutil
import time
from pathlib import Path

from align.config import AlignConfig
from align.policy import PromptFormatter, load_policy, load_value_model, lora_config, resolve_policy_path
from align.stages import finish_partial
from align.trainer_common import (
    CURVES,
    MetricsRecorder,
    final_values,
    load_reward,
    open_training_stage,
    use_bf16,
    write_metrics,
)
from refine.rundir import write_json
from reward.adapters import PolicyTokenRewardModel

logger = logging.getLogger(__name__)


def ppo_arguments(config: AlignConfig, output_dir: Path, *, seed: int, num_prompts: int):
    """TRL's PPOConfig from the ppo section (same names), with silr's fixed choices."""
    from trl.experimental.ppo import PPOConfig

    ppo = config.ppo
    return PPOConfig(
        output_dir=str(output_dir), seed=seed, learning_rate=ppo.learning_rate, kl_coef=ppo.kl_coef,
        cliprange=ppo.cliprange, vf_coef=ppo.vf_coef, response_length=ppo.response_length,
        stop_token=ppo.stop_token, missing_eos_penalty=ppo.missing_eos_penalty, temperature=ppo.temperature,
        num_ppo_epochs=ppo.num_ppo_epochs, per_device_train_batch_size=ppo.per_device_train_batch_size,
        gradient_accumulation_steps=ppo.gradient_accumulation_steps,
        local_rollout_forward_batch_size=ppo.local_rollout_forward_batch_size, num_mini_batches=ppo.num_mini_batches,
        total_episodes=ppo.total_episodes or num_prompts,
        # gradient_checkpointing is the deprecated (warning) alias of activation_checkpointing in transformers 5.24.
        activation_checkpointing=ppo.gradient_checkpointing,
        bf16=use_bf16(ppo.bf16, "ppo.bf16"), fp16=False, report_to=ppo.report_to, logging_steps=ppo.logging_steps,
        save_strategy="no", num_sample_generations=0,  # silr evaluates on held-out prompts instead
    )


def resolve_auto_launch_values(args) -> None:
    """Give ``auto`` values of an accelerate launch profile the PPO settings, as transformers' Trainer would.

    A DeepSpeed profile written for the Trainer (``gradient_accumulation_steps: auto``, ``gradient_clipping: auto``)
    reaches the processes as ACCELERATE_* variables; trl 1.12's PPOTrainer builds its own ``Accelerator`` and fails on
    ``int('auto')``. Removable when TRL resolves them itself.
    """
    for variable, value in (("ACCELERATE_GRADIENT_ACCUMULATION_STEPS", args.gradient_accumulation_steps),
                            ("ACCELERATE_GRADIENT_CLIPPING", args.max_grad_norm)):
        if os.environ.get(variable) == "auto":
            os.environ[variable] = str(value)


def training_dataset(config: AlignConfig, tokenizer, prompts: list[str]):
    from datasets import Dataset

    formatter = PromptFormatter.from_config(tokenizer, config.policy)
    return Dataset.from_dict({"input_ids": [formatter.token_ids(p) for p in prompts]})


def train_variant(config: AlignConfig, variant: str, seed: int, *, config_path: str | None = None) -> Path:
    """Train (or find finished) the PPO policy of one variant and seed; returns its folder."""
    from accelerate import PartialState
    from transformers import set_seed
    from trl.experimental.ppo import PPOTrainer

    stage = open_training_stage(config, variant, seed, config_path=config_path)
    if stage.done:
        return stage.folder
    state, name, reward_path, prompts = PartialState(), stage.name, stage.reward_path, stage.prompts

    # Load and check everything before the run folder exists, so a bad input leaves nothing behind.
    set_seed(seed)
    policy_path = resolve_policy_path(config.policy)
    policy, tokenizer = load_policy(config.policy, policy_path)
    reward = PolicyTokenRewardModel(load_reward(reward_path, config), tokenizer)
    peft_config = lora_config(config.policy)
    reference = None if peft_config is not None else load_policy(config.policy, policy_path)[0]
    value_model = load_value_model(config.policy, tokenizer, policy_path, seed=seed)
    dataset = training_dataset(config, tokenizer, prompts)
    needed = config.ppo.per_device_train_batch_size * config.ppo.gradient_accumulation_steps * state.num_processes
    if len(dataset) < needed:
        raise ValueError(f"{len(dataset)} training prompts are fewer than one rollout batch ({needed} = "
                         "per_device_train_batch_size x gradient_accumulation_steps x processes); raise "
                         "prompts.num_train or lower the batch size.")

    folder, partial = stage.folder, stage.partial
    if state.is_main_process:
        shutil.rmtree(partial, ignore_errors=True)
        partial.mkdir(parents=True)
    state.wait_for_everyone()
    try:
        args = ppo_arguments(config, partial / "trainer", seed=seed, num_prompts=len(prompts))
        resolve_auto_launch_values(args)
        recorder = MetricsRecorder()
        trainer = PPOTrainer(args=args, processing_class=tokenizer, model=policy, ref_model=reference,
                             reward_model=reward, train_dataset=dataset, value_model=value_model,
                             callbacks=[recorder], peft_config=peft_config)
        logger.info("%s: %d PPO updates of %d rollouts (reward %s, %s)", name, args.num_total_batches,
                    args.batch_size, reward_path,
                    "policy ids reused" if reward.reuses_token_ids else "decoded and re-tokenized")
        start = time.perf_counter()
        trainer.train()
        seconds = time.perf_counter() - start
        save_policy(trainer, partial / "policy", tokenizer)
        state.wait_for_everyone()
        if state.is_main_process:
            shutil.rmtree(partial / "trainer", ignore_errors=True)
            frame = write_metrics(partial, recorder.rows, f"{variant} seed {seed}", CURVES["ppo"])
            steps = int(args.num_total_batches)
            plugin = getattr(trainer.accelerator.state, "deepspeed_plugin", None)
            write_json(partial / "train.json", {
                "algorithm": "ppo", "variant": variant, "seed": seed, "reward_model": str(reward_path), "updates": steps,
                "episodes": int(steps * args.batch_size), "world_size": int(args.world_size), "seconds": seconds,
                "seconds_per_update": seconds / max(steps, 1), "lora": peft_config is not None,
                "distributed_type": str(trainer.accelerator.distributed_type.value),
                "zero_stage": getattr(plugin, "zero_stage", None),
                "final": final_values(frame, CURVES["ppo"]),
            })
            finish_partial(partial, folder, stage.fingerprint)
    finally:
        if state.is_main_process and partial.exists():
            shutil.rmtree(partial, ignore_errors=True)  # an interrupted run leaves nothing that looks finished
    state.wait_for_everyone()
    logger.info("%s: %d updates in %.1fs (%.1fs per update)", name, args.num_total_batches, seconds,
                seconds / max(args.num_total_batches, 1))
    return folder


def save_policy(trainer, folder: Path, tokenizer) -> None:
    """Save the trained policy (full weights, or LoRA adapters) and its tokenizer from the main process.

    Not ``trainer.save_model``: in trl 1.12 under DDP it saves the DDP-wrapped policy-and-value module (safetensors
    refuses its tied weights) and fails on other ranks (``is_distributed_loading_by_transformers`` is unset because
    PPOTrainer skips Trainer.__init__). Under DeepSpeed ZeRO-3 the sharded weights are gathered first, on all ranks.
    """
    accelerator = trainer.accelerator
    state_dict = None
    plugin = getattr(accelerator.state, "deepspeed_plugin", None)
    if plugin is not None and plugin.zero_stage == 3:
        full = accelerator.get_state_dict(trainer.model)
        state_dict = {k.removeprefix("policy."): v for k, v in (full or {}).items() if k.startswith("policy.")}
    if accelerator.is_main_process:
        policy = accelerator.unwrap_model(trainer.model).policy
        policy.save_pretrained(str(folder), state_dict=state_dict, safe_serialization=True)
        tokenizer.save_pretrained(str(folder))
