"""The GRPO and RLOO stages: TRL's ``GRPOTrainer`` / ``RLOOTrainer`` (trl 1.12.0 main namespace) configured, not
forked. Neither needs a value model; both sample ``num_generations`` completions per prompt and compare each with the
others of its prompt (GRPO: reward minus the group mean, over the group std; RLOO: minus the mean of the others).

For each variant and seed, as the PPO stage does (:mod:`align.ppo`):

- **policy**: the SFT policy from :func:`align.policy.policy_folder_with_pad` (the same weights and tokenizer as PPO's,
  pad token included), LoRA through ``peft_config`` when ``policy.use_lora``. TRL loads it from that folder, and so
  its reference copy when ``beta > 0`` (with LoRA: the adapter disabled);
- **prompts**: ``prompts/train.jsonl``, as conversations (``policy.system_prompt``, then the prompt as the user) that
  TRL renders with the policy's chat template and a generation prompt, which gives the token ids PPO's queries have;
  or, for a tokenizer without a chat template, the text of ``policy.plain_prompt_template``;
- **reward**: the variant's reward model through :class:`RawPromptSafetyReward`, a
  :class:`reward.adapters.SafetyRewardFunction` that reads the raw user prompt from the dataset column ``raw_prompt``
  (not the chat-rendered text) and the decoded completion, stripped: the reward model's template joins them as in
  its training, the PPO adapter and the evaluation. Normalised as ``ppo.normalize_rewards`` says;
- **settings**: the ``grpo:`` or ``rloo:`` section (:mod:`align.algorithms`, where the table of TRL fields is),
  the run's seed, ``bf16`` off on CPU, no checkpoints.

TRL's metrics (``reward``, ``kl``, ``entropy``, ``completions/mean_length``, ``rewards/silr_safety/mean``, ...) go to
``metrics.csv`` and ``metrics.png``. The run is built in ``<algorithm>/<variant>/.seed_<s>.partial`` and renamed
when complete; under ``accelerate launch`` every process trains and the main process writes.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import logging
import shutil
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from align.config import AlignConfig
from align.policy import PromptFormatter, load_tokenizer, lora_config, policy_folder_with_pad
from align.stages import finish_partial
from align.trainer_common import (
    CURVES,
    TRAINER_NAMES,
    MetricsRecorder,
    final_values,
    load_reward,
    open_training_stage,
    use_bf16,
    write_metrics,
)
from refine.distributed import use_cpu
from refine.rundir import write_json
from reward.adapters import SafetyRewardFunction, completion_text

logger = logging.getLogger(__name__)

RAW_PROMPT = "raw_prompt"  # the dataset column TRL passes to reward functions as a keyword argument


class RawPromptSafetyReward(SafetyRewardFunction):
    """The training reward for GRPO/RLOO: ``reward_model.score_pairs(raw prompts, stripped completions)``.

    TRL calls it with ``prompts`` (the dataset's prompt: a conversation, or chat-free text with the plain template
    applied), ``completions`` (decoded without special tokens; conversational ones as assistant messages) and every
    other dataset column as a keyword argument, here ``raw_prompt``: the user's prompt as written. Counts the
    completions it scored (this process's share).
    """

    def __init__(self, reward_model, *, name: str = "silr_safety"):
        super().__init__(reward_model, name=name)
        self.completions_scored = 0

    def __call__(self, prompts: Sequence[Any], completions: Sequence[Any], **kwargs: Any) -> list[float]:
        raw = kwargs.get(RAW_PROMPT)
        if raw is None:
            raise ValueError(f"the training dataset has no {RAW_PROMPT!r} column, so the reward cannot see the raw "
                             "prompt; build it with align.grpo_rloo.training_dataset.")
        responses = [completion_text(c).strip() for c in completions]
        self.completions_scored += len(responses)
        return super().__call__(list(raw), responses)


def training_dataset(config: AlignConfig, tokenizer, prompts: list[str]):
    """``prompt`` (a conversation, or plain text without a chat template) and ``raw_prompt`` per training prompt."""
    from datasets import Dataset

    formatter = PromptFormatter.from_config(tokenizer, config.policy)
    shown = [formatter.messages(p) if formatter.uses_chat_template else formatter.text(p) for p in prompts]
    return Dataset.from_dict({"prompt": shown, RAW_PROMPT: list(prompts)})


def check_vllm(config: AlignConfig) -> None:
    """``use_vllm`` needs CUDA and the vllm package; say so in one line before anything loads."""
    key = f"{config.algorithm}.use_vllm"
    if not config.training.use_vllm:
        return
    if use_cpu():
        raise ValueError(f"{key}=true needs a CUDA GPU (vLLM generates on the GPU); set {key} to false on CPU.")
    if importlib.util.find_spec("vllm") is None:
        raise ValueError(f"{key}=true needs the vllm package (pip install vllm, the version TRL 1.12 supports); "
                         f"install it or set {key} to false.")


def trainer_arguments(config: AlignConfig, output_dir: Path, *, seed: int):
    """TRL's GRPOConfig or RLOOConfig from the algorithm's section (same names), with silr's fixed choices."""
    from trl import GRPOConfig, RLOOConfig

    name, settings = config.algorithm, config.training
    config_class = GRPOConfig if name == "grpo" else RLOOConfig
    passed = {key: value for key, value in dataclasses.asdict(settings).items()
              if key not in ("gradient_checkpointing", "bf16", "max_steps")}
    if name == "rloo" and settings.reward_clip_range is not None:
        passed["reward_clip_range"] = tuple(settings.reward_clip_range)  # TRL's type: (min, max)
    return config_class(
        output_dir=str(output_dir), seed=seed, **passed, max_steps=settings.max_steps or -1,
        # gradient_checkpointing is the deprecated (warning) alias of activation_checkpointing in transformers 5.24.
        activation_checkpointing=settings.gradient_checkpointing,
        bf16=use_bf16(settings.bf16, f"{name}.bf16"), fp16=False, use_cpu=use_cpu(), save_strategy="no",
        model_init_kwargs={"dtype": config.policy.dtype}, trust_remote_code=config.policy.trust_remote_code,
    )


def check_batch(config: AlignConfig, *, num_processes: int, num_prompts: int) -> None:
    """Each update's completions must form whole groups of num_generations, and the training prompts must fill one
    generation batch (TRL generates once per update: per_device_train_batch_size x gradient_accumulation_steps x
    processes completions)."""
    settings, name = config.training, config.algorithm
    per_update = settings.per_device_train_batch_size * settings.gradient_accumulation_steps * num_processes
    if per_update % settings.num_generations:
        raise ValueError(f"{name}: per_device_train_batch_size x gradient_accumulation_steps x processes = "
                         f"{per_update} completions per update is not a multiple of num_generations="
                         f"{settings.num_generations} (each prompt's completions form one group); change "
                         f"{name}.per_device_train_batch_size or {name}.num_generations.")
    needed = per_update // settings.num_generations
    if num_prompts < needed:
        raise ValueError(f"{num_prompts} training prompts are fewer than one generation batch ({needed} prompts x "
                         f"{settings.num_generations} completions); raise prompts.num_train or lower "
                         f"{name}.per_device_train_batch_size.")


def train_variant(config: AlignConfig, variant: str, seed: int, *, config_path: str | None = None) -> Path:
    """Train (or find finished) the GRPO or RLOO policy of one variant and seed; returns its folder."""
    from accelerate import PartialState
    from transformers import set_seed
    from trl import GRPOTrainer, RLOOTrainer

    algorithm = config.algorithm
    stage = open_training_stage(config, variant, seed, config_path=config_path)
    if stage.done:
        return stage.folder
    state, name, reward_path, prompts = PartialState(), stage.name, stage.reward_path, stage.prompts

    # Load and check everything before the run folder exists, so a bad input leaves nothing behind.
    check_vllm(config)
    set_seed(seed)
    policy_path = policy_folder_with_pad(config.policy)
    tokenizer = load_tokenizer(policy_path, config.policy)
    reward = RawPromptSafetyReward(load_reward(reward_path, config, device=str(state.device)))
    dataset = training_dataset(config, tokenizer, prompts)
    check_batch(config, num_processes=state.num_processes, num_prompts=len(dataset))
    folder, partial = stage.folder, stage.partial
    args = trainer_arguments(config, partial / "trainer", seed=seed)

    if state.is_main_process:
        shutil.rmtree(partial, ignore_errors=True)
        partial.mkdir(parents=True)
    state.wait_for_everyone()
    try:
        recorder = MetricsRecorder()
        trainer_class = GRPOTrainer if algorithm == "grpo" else RLOOTrainer
        trainer = trainer_class(model=policy_path, reward_funcs=[reward], args=args, train_dataset=dataset,
                                processing_class=tokenizer, callbacks=[recorder],
                                peft_config=lora_config(config.policy))
        logger.info("%s: %s, %d completions per generation batch, %d per prompt (reward %s)", name,
                    TRAINER_NAMES[algorithm], args.generation_batch_size, args.num_generations, reward_path)
        start = time.perf_counter()
        trainer.train()
        seconds = time.perf_counter() - start
        trainer.save_model(str(partial / "policy"))  # every process: DeepSpeed gathers the weights first
        state.wait_for_everyone()
        updates = int(trainer.state.global_step)
        scored = torch.tensor([reward.completions_scored], device=trainer.accelerator.device)
        completions = int(trainer.accelerator.reduce(scored, reduction="sum").item())
        if state.is_main_process:
            (partial / "policy" / "training_args.bin").unlink(missing_ok=True)  # a pickle; the policy needs none
            shutil.rmtree(partial / "trainer", ignore_errors=True)
            frame = write_metrics(partial, recorder.rows, f"{variant} seed {seed} ({algorithm.upper()})",
                                  CURVES[algorithm])
            plugin = getattr(trainer.accelerator.state, "deepspeed_plugin", None)
            write_json(partial / "train.json", {
                "algorithm": algorithm, "trainer": TRAINER_NAMES[algorithm], "variant": variant, "seed": seed,
                "reward_model": str(reward_path), "updates": updates, "episodes": completions,
                "num_generations": int(args.num_generations), "world_size": int(args.world_size),
                "seconds": seconds, "seconds_per_update": seconds / max(updates, 1),
                "lora": config.policy.use_lora, "distributed_type": str(trainer.accelerator.distributed_type.value),
                "zero_stage": getattr(plugin, "zero_stage", None), "final": final_values(frame, CURVES[algorithm]),
            })
            finish_partial(partial, folder, stage.fingerprint)
    finally:
        if state.is_main_process and partial.exists():
            shutil.rmtree(partial, ignore_errors=True)  # an interrupted run leaves nothing that looks finished
    state.wait_for_everyone()
    logger.info("%s: %d updates, %d completions in %.1fs (%.1fs per update)", name, updates, completions, seconds,
                seconds / max(updates, 1))
    return folder
