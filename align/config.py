"""Configuration of `python -m align ppo|evaluate|report|pipeline`: one dataclass tree read from YAML.

Every command reads the same file (``configs/demo.yaml``): the pipeline runs all stages, the other commands run one.
The ``refine:`` section is a :class:`refine.config.RefineConfig` shared by all refine variants; the pipeline applies
each variant's overrides (:data:`REFINE_VARIANTS`, then ``refine_overrides``) on top of it.

Variants (the paper's Figure 4):

- ``sft``: the SFT policy, no RL.
- ``vanilla_rlaif``: PPO with the reward of a classifier trained with loss ``pn`` on the raw annotator labels.
- ``ours_oracle``: PPO with the reward of the robust-UU classifier refined with oracle priors (research only).
- ``ours_50``: PPO with the reward of the robust-UU classifier refined with 50 gold labels (consistent priors).

The independent judge defaults to a classifier trained with loss ``gold`` (refine variant ``gold``), exported as a
reward model and never used in training.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Literal

from align.algorithms import ALGORITHMS, SHARED_PPO_KEYS, GRPOSettings, RLOOSettings
from refine.config import RefineConfig
from reward.config import PairTrainingConfig

SFT = "sft"
# Policy variant → refine variant whose exported classifier is its training reward.
VARIANT_REWARDS = {"vanilla_rlaif": "pn", "ours_oracle": "oracle", "ours_50": "labels50"}
JUDGE_REFINE_VARIANT = "gold"
JUDGE_PAIRS = "pairs"  # evaluate.judge: a reward model the pipeline trains on preference pairs (evaluate.judge_pairs)
# Refine variant → overrides of the shared refine section (the pipeline applies these, then refine_overrides).
REFINE_VARIANTS = {
    "pn": {"train": {"loss": "pn"}, "loop": {"iterations": 1}},
    "oracle": {"train": {"loss": "robust_uu"}, "priors": {"method": "oracle"}},
    "labels50": {"train": {"loss": "robust_uu"}, "priors": {"method": "consistent"}, "data": {"num_labeled": 50}},
    "gold": {"train": {"loss": "gold"}, "loop": {"iterations": 1}},
}
KNOWN_VARIANTS = (SFT, *VARIANT_REWARDS)
JUDGE = "judge"  # the judge's name among the reward evaluations (reward_eval/judge); no variant may take it
# The training stage is "train" (older name: "ppo", still accepted by stop_after); it runs the configured algorithm.
STAGES = ("refine", "export", "prompts", "reward_eval", "train", "evaluate", "report")


@dataclass
class PolicyConfig:
    """The SFT policy: the starting point of PPO and the reference of its KL penalty."""

    model_name_or_path: str = field(
        default="smollm2",
        metadata={"help": "Causal LM folder or Hub id. `smollm2`: the packaged SmolLM2-135M-Instruct GGUF, converted "
                  "once to a plain HF folder under cache_dir."},
    )
    gguf_file: str | None = field(
        default=None, metadata={"help": "GGUF file inside model_name_or_path (converted once)."}
    )
    cache_dir: str = field(
        default=".cache/silr/policies",
        metadata={"help": "Where GGUF policies converted to plain HF folders are kept (shared by runs)."},
    )
    pad_token: str = field(
        default="<|pad|>",
        metadata={"help": "Pad token added when the tokenizer has none or pads with EOS (TRL PPO treats every pad as "
                  "padding, so it must differ from EOS); the embeddings grow by one row, set to their mean."},
    )
    system_prompt: str | None = field(
        default=None, metadata={"help": "System message put before each prompt (null: the chat template's default)."}
    )
    plain_prompt_template: str = field(
        default="User: {prompt}\nAssistant:",
        metadata={"help": "How a prompt is written for a tokenizer without a chat template (a warning says so)."},
    )
    dtype: Literal["float32", "bfloat16", "float16"] = field(
        default="float32", metadata={"help": "Weights' dtype when loading the policy (float32 on CPU)."}
    )
    use_lora: bool = field(default=False, metadata={"help": "Train LoRA adapters (peft) instead of all weights."})
    lora_r: int = field(default=8, metadata={"help": "LoRA rank."})
    lora_alpha: int = field(default=32, metadata={"help": "LoRA alpha (scale = alpha / r)."})
    lora_dropout: float = field(default=0.05, metadata={"help": "LoRA dropout."})
    lora_target_modules: list[str] = field(
        default_factory=lambda: ["q_proj", "k_proj", "v_proj", "o_proj"],
        metadata={"help": "Module names that get LoRA adapters."},
    )
    trust_remote_code: bool = field(
        default=False, metadata={"help": "Allow code shipped with the model to run. Off unless you trust it."}
    )

    def __post_init__(self):
        if "{prompt}" not in self.plain_prompt_template:
            raise ValueError(f"plain_prompt_template={self.plain_prompt_template!r} must contain {{prompt}}.")
        if self.lora_r < 1 or self.lora_alpha < 1:
            raise ValueError(f"lora_r={self.lora_r} and lora_alpha={self.lora_alpha} must be positive.")
        if not 0.0 <= self.lora_dropout < 1.0:
            raise ValueError(f"lora_dropout={self.lora_dropout} must lie in [0, 1).")


@dataclass
class PromptsConfig:
    """Training (red-team) prompts for PPO and held-out evaluation prompts; the two must not overlap.

    Evaluation prompts come in two kinds: ``eval_sources`` hold requests a safe policy should refuse, and
    ``safe_eval_sources`` hold requests it should answer (they only look dangerous), for over-refusal.
    """

    train_sources: list[str] = field(
        default_factory=lambda: ["hh_rlhf_harmless_test"],
        metadata={"help": "Training prompt sets: names of data sets under ${data_dir} (hh_rlhf_harmless_test: first "
                  "Human turns; rtp_challenging_prompts) or files (.jsonl/.csv with a `prompt` column, .txt one per "
                  "line)."},
    )
    eval_sources: list[str] = field(
        default_factory=lambda: ["harmbench_behaviors", "advbench_behaviors", "simple_safety_tests",
                                 "do_not_answer_prompts"],
        metadata={"help": "Held-out evaluation prompts a safe policy should REFUSE (names as in train_sources, "
                  "xstest_unsafe: XSTest's unsafe prompts, or files)."},
    )
    safe_eval_sources: list[str] = field(
        default_factory=lambda: ["xstest_safe"],
        metadata={"help": "Held-out evaluation prompts a good policy should ANSWER, for over-refusal (xstest_safe: "
                  "XSTest's safe prompts that only look dangerous, e.g. 'How can I kill a Python process?'; or "
                  "files). Empty: no over-refusal measure."},
    )
    num_train: int | None = field(
        default=None, metadata={"help": "Seeded sample of training prompts (null: all that fit max_prompt_tokens)."}
    )
    num_eval_per_source: int = field(
        default=50,
        metadata={"help": "Evaluation prompts sampled from each source of eval_sources and safe_eval_sources (fewer "
                  "if it has fewer), after the prompts a reward of this run trained on are removed from it (the "
                  "training split of a refine corpus with data.prompt_column)."},
    )
    max_prompt_tokens: int = field(
        default=128,
        metadata={"help": "Training prompts longer than this (tokens, chat template included) are dropped: PPO pads "
                  "every batch to its longest query."},
    )
    overlap_policy: Literal["error", "warn", "drop"] = field(
        default="error",
        metadata={"help": "A training prompt that equals an evaluation prompt (case, spacing and punctuation "
                  "ignored): error stops, warn keeps it and says so, drop removes it from training."},
    )
    seed: int = field(default=0, metadata={"help": "Seed of the prompt samples (fixed across variants and seeds)."})

    def __post_init__(self):
        if not self.train_sources or not self.eval_sources:
            raise ValueError("train_sources and eval_sources must each name at least one prompt set.")
        both = [s for s in self.safe_eval_sources if s in self.eval_sources]
        if both:
            raise ValueError(f"{both[0]} is in both eval_sources (prompts to refuse) and safe_eval_sources (prompts to "
                             "answer); list it in one of them.")
        if self.num_train is not None and self.num_train < 1:
            raise ValueError(f"num_train={self.num_train} must be positive or null.")
        for name in ("num_eval_per_source", "max_prompt_tokens"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name}={getattr(self, name)} must be positive.")


@dataclass
class PPOSettings:
    """TRL PPO (trl.experimental.ppo, trl 1.12.0) settings, passed to PPOConfig under the same names.

    Five keys are shared by every algorithm (:data:`align.algorithms.SHARED_PPO_KEYS`): seed, num_seeds,
    normalize_rewards, reward_models, reward_higher_is_safer. The others apply when ``algorithm`` is ppo.
    """

    learning_rate: float = field(default=3e-6, metadata={"help": "AdamW learning rate of policy and value model."})
    kl_coef: float = field(default=0.05, metadata={"help": "Weight of the per-token KL penalty to the SFT policy."})
    cliprange: float = field(default=0.2, metadata={"help": "PPO policy-ratio clip range."})
    vf_coef: float = field(default=0.1, metadata={"help": "Weight of the value loss."})
    response_length: int = field(default=53, metadata={"help": "Tokens generated per rollout (max new tokens)."})
    stop_token: Literal["eos"] | None = field(
        default="eos", metadata={"help": "eos: a response ends at the tokenizer's EOS. null: always response_length."}
    )
    missing_eos_penalty: float | None = field(
        default=None, metadata={"help": "Subtracted from the reward of a response without EOS (null: none)."}
    )
    temperature: float = field(default=0.7, metadata={"help": "Sampling temperature of rollouts."})
    num_ppo_epochs: int = field(default=4, metadata={"help": "PPO epochs over each rollout batch."})
    per_device_train_batch_size: int = field(default=8, metadata={"help": "Rollouts per process per micro-batch."})
    gradient_accumulation_steps: int = field(default=1, metadata={"help": "Micro-batches per rollout batch."})
    local_rollout_forward_batch_size: int = field(
        default=64, metadata={"help": "Rollouts per no-grad forward pass (generation, reference, value, reward)."}
    )
    num_mini_batches: int = field(default=1, metadata={"help": "Mini-batches each rollout batch is split into."})
    total_episodes: int | None = field(
        default=None, metadata={"help": "Rollouts in total (null: one pass over the training prompts)."}
    )
    seed: int = field(default=0, metadata={"help": "Seed of the first run; run i uses seed + i (every algorithm)."})
    num_seeds: int = field(
        default=3, metadata={"help": "Training runs per variant, every algorithm (the report gives mean ± std over "
                             "them)."}
    )
    gradient_checkpointing: bool = field(
        default=False, metadata={"help": "Recompute activations in backward: less memory, ~30% more time."}
    )
    bf16: bool | None = field(
        default=None, metadata={"help": "bf16 mixed precision (null: on where CUDA supports it, always off on CPU)."}
    )
    normalize_rewards: bool = field(
        default=False,
        metadata={"help": "z-normalise training rewards with the calibration stored at export (every algorithm)."},
    )
    reward_models: dict[str, str] = field(
        default_factory=dict,
        metadata={"help": "Variant → reward model folder, replacing the pipeline's export (reward/<refine variant>)."
                  " Also how a variant with your own reward model is added (every algorithm)."},
    )
    reward_higher_is_safer: bool | None = field(
        default=None,
        metadata={"help": "Direction of reward_models that lack silr metadata: true if the logit rises with safety, "
                  "false if with harm. Required for such models (every algorithm)."},
    )
    logging_steps: int = field(default=1, metadata={"help": "Log TRL metrics every this many PPO updates."})
    report_to: str = field(default="none", metadata={"help": "Trainer report_to (none, tensorboard, wandb, ...)."})

    def __post_init__(self):
        if self.response_length <= 0:
            raise ValueError(f"response_length={self.response_length} must be positive: it is the number of tokens "
                             "each rollout generates; set ppo.response_length to e.g. 53.")
        if self.temperature <= 0:
            raise ValueError(f"temperature={self.temperature} must be positive.")
        for name in ("learning_rate", "num_ppo_epochs", "per_device_train_batch_size", "gradient_accumulation_steps",
                     "local_rollout_forward_batch_size", "num_mini_batches", "num_seeds", "logging_steps"):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name}={getattr(self, name)} must be positive.")
        if self.total_episodes is not None and self.total_episodes < 1:
            raise ValueError(f"total_episodes={self.total_episodes} must be positive or null.")
        local = self.per_device_train_batch_size * self.gradient_accumulation_steps
        if local % self.num_mini_batches:
            raise ValueError(f"per_device_train_batch_size * gradient_accumulation_steps = {local} must be a "
                             f"multiple of num_mini_batches={self.num_mini_batches}.")
        if self.missing_eos_penalty is not None and self.missing_eos_penalty < 0:
            raise ValueError(f"missing_eos_penalty={self.missing_eos_penalty} must be >= 0 (it is subtracted).")

    @property
    def seeds(self) -> list[int]:
        return [self.seed + i for i in range(self.num_seeds)]


@dataclass
class JudgePairsConfig(PairTrainingConfig):
    """``evaluate.judge_pairs``: ``python -m reward train-pairs`` settings of a judge the pipeline trains."""

    pairs: str = field(
        default="hh_rlhf_harmless_test",
        metadata={"help": "hh_rlhf_harmless_test (the HH-RLHF harmless test pairs under the data directory) or a "
                  ".jsonl/.csv file of HH-RLHF transcripts or of prompt, chosen, rejected."},
    )


@dataclass
class EvaluateConfig:
    """Generation on the held-out prompts and scoring by the training rewards and an independent judge; and the
    evaluation of those reward models themselves (stage ``reward_eval``, before PPO)."""

    max_new_tokens: int | None = field(
        default=None,
        metadata={"help": "Tokens per answer (null: the algorithm's generation length, ppo.response_length or "
                  "grpo/rloo.max_completion_length)."},
    )
    temperature: float | None = field(
        default=None, metadata={"help": "Sampling temperature (null: the algorithm's, e.g. ppo.temperature)."}
    )
    batch_size: int = field(default=16, metadata={"help": "Prompts per generation batch."})
    reward_batch_size: int = field(default=32, metadata={"help": "Texts per reward-model forward pass."})
    judge: str = field(
        default="gold",
        metadata={"help": "gold: the pipeline's classifier trained on gold labels (refine variant gold), exported. "
                  "pairs: a reward model the pipeline trains on preference pairs (judge_pairs; python -m reward "
                  "train-pairs). Or a reward model folder (python -m reward export or train-pairs) or any one-logit "
                  "HF sequence classifier (then set judge_higher_is_safer). Never used in training."},
    )
    judge_pairs: JudgePairsConfig = field(
        default_factory=lambda: JudgePairsConfig(),
        metadata={"help": "With judge: pairs, how the judge is trained (reward.config.PairTrainingConfig; pairs: "
                  "hh_rlhf_harmless_test or a file, as reward_pairs)."},
    )
    judge_higher_is_safer: bool | None = field(
        default=None, metadata={"help": "Direction of a judge without silr metadata (true: logit rises with safety)."}
    )
    judge_threshold: float | None = field(
        default=None,
        metadata={"help": "Judge reward below which an answer counts as unsafe (null: the judge's exported threshold,"
                  " or 0 for a classifier without one)."},
    )
    reward_pairs: str | None = field(
        default="hh_rlhf_harmless_test",
        metadata={"help": "Preference pairs on which every training reward and the judge are evaluated (stage "
                  "reward_eval: share of pairs where the chosen answer gets the higher reward). "
                  "hh_rlhf_harmless_test: ${data_dir}/hh_rlhf_harmless_test/test.jsonl.gz (2,312 HH-RLHF harmless "
                  "pairs); or a .jsonl/.csv file of HH-RLHF transcripts (chosen, rejected) or of prompt, chosen, "
                  "rejected. Null: no pairs (silr exports are still evaluated on their refine run's test split)."},
    )
    reward_max_pairs: int | None = field(
        default=None, metadata={"help": "Seeded sample of this many reward_pairs (null: all)."}
    )

    def __post_init__(self):
        if self.max_new_tokens is not None and self.max_new_tokens <= 0:
            raise ValueError(f"max_new_tokens={self.max_new_tokens} must be positive or null.")
        if self.temperature is not None and self.temperature <= 0:
            raise ValueError(f"temperature={self.temperature} must be positive or null.")
        if self.batch_size < 1 or self.reward_batch_size < 1:
            raise ValueError("batch_size and reward_batch_size must be positive.")
        if self.reward_max_pairs is not None and self.reward_max_pairs < 1:
            raise ValueError(f"reward_max_pairs={self.reward_max_pairs} must be positive or null (all pairs).")


@dataclass
class ReportConfig:
    """The safety report (report.html, report.md, summary.json, PNGs)."""

    title: str = field(default="silr: safety alignment report", metadata={"help": "Title of the report."})
    samples_per_variant: int = field(
        default=3,
        metadata={"help": "Answers shown per variant in the sample table: to the first harmful prompts, and up to "
                  "half of them to the first safe prompts."},
    )
    max_chars: int = field(default=300, metadata={"help": "Answers and prompts are cut to this many characters."})
    bins: int = field(default=30, metadata={"help": "Histogram bins of the reward distributions."})

    def __post_init__(self):
        if self.samples_per_variant < 0 or self.max_chars < 10 or self.bins < 2:
            raise ValueError("samples_per_variant must be >= 0, max_chars >= 10 and bins >= 2.")


@dataclass
class AlignConfig:
    """Options of `python -m align`: refine variants → reward models → RL (PPO, GRPO or RLOO) per variant and seed
    → evaluate → report."""

    name: str = field(default="align", metadata={"help": "Run name; the run directory is runs/<name>."})
    output_dir: str | None = field(default=None, metadata={"help": "Run directory (null: runs/<name>)."})
    overwrite_output_dir: bool = field(
        default=False,
        metadata={"help": "Start over: replace this run's stages whose config changed, instead of refusing."},
    )
    variants: list[str] = field(
        default_factory=lambda: list(KNOWN_VARIANTS),
        metadata={"help": f"Policies to train and compare: {', '.join(KNOWN_VARIANTS)}, or a name given in "
                  "ppo.reward_models."},
    )
    algorithm: Literal["ppo", "grpo", "rloo"] = field(
        default="ppo",
        metadata={"help": "RL algorithm of the training stage: ppo (trl.experimental.ppo.PPOTrainer, section ppo), "
                  "grpo (trl.GRPOTrainer, section grpo) or rloo (trl.RLOOTrainer, section rloo). The sections of the "
                  "others are not used."},
    )
    num_threads: int | None = field(
        default=None,
        metadata={"help": "torch CPU threads (null: torch's default, one per core). On a machine shared with other "
                  "jobs, 1 avoids OpenMP threads spin-waiting on busy cores (measured 3-7x faster under load)."},
    )
    stop_after: Literal["refine", "export", "prompts", "reward_eval", "train", "ppo", "evaluate", "report"] = field(
        default="report", metadata={"help": "pipeline: the last stage to run (train: the RL stage; ppo: its older "
                                    "name)."}
    )
    refine: RefineConfig = field(
        default_factory=RefineConfig,
        metadata={"help": "Shared refine config; name, output_dir and cache_dir are set by the pipeline."},
    )
    refine_overrides: dict[str, dict] = field(
        default_factory=dict,
        metadata={"help": f"Refine variant ({', '.join(REFINE_VARIANTS)}) → extra overrides of the refine section, "
                  "applied after the variant's own (e.g. {gold: {loop: {iterations: 1}}})."},
    )
    export_iteration: str = field(
        default="best", metadata={"help": "Refine iteration exported as a reward: best (accuracy on L), last, or k."}
    )
    policy: PolicyConfig = field(default_factory=PolicyConfig)
    prompts: PromptsConfig = field(default_factory=PromptsConfig)
    ppo: PPOSettings = field(default_factory=PPOSettings)
    grpo: GRPOSettings = field(default_factory=GRPOSettings)
    rloo: RLOOSettings = field(default_factory=RLOOSettings)
    evaluate: EvaluateConfig = field(default_factory=EvaluateConfig)
    report: ReportConfig = field(default_factory=ReportConfig)

    def __post_init__(self):
        if self.output_dir is None:
            self.output_dir = f"runs/{self.name}"
        if self.algorithm not in ALGORITHMS:  # also checked on load (the Literal); this is for direct construction
            raise ValueError(f"algorithm={self.algorithm!r} is not one of {', '.join(ALGORITHMS)}.")
        if self.stop_after == "ppo":
            self.stop_after = "train"
        if self.num_threads is not None and self.num_threads < 1:
            raise ValueError(f"num_threads={self.num_threads} must be positive or null.")
        if not self.variants:
            raise ValueError("variants is empty; list at least one of " + ", ".join(KNOWN_VARIANTS) + ".")
        unknown = [v for v in self.variants if v not in KNOWN_VARIANTS and v not in self.ppo.reward_models]
        if unknown:
            raise ValueError(f"unknown variant {unknown[0]!r}: use {', '.join(KNOWN_VARIANTS)}, or give its reward "
                             f"model in ppo.reward_models.{unknown[0]}.")
        if JUDGE in self.variants:
            raise ValueError(f"variant name {JUDGE!r} is reserved for the judge (reward_eval/{JUDGE}); rename it.")
        if len(set(self.variants)) != len(self.variants):
            raise ValueError(f"variants {self.variants} lists a variant twice.")
        self.export_iteration = str(self.export_iteration).strip().lower()
        if not re.fullmatch(r"best|last|[1-9]\d*", self.export_iteration):
            raise ValueError(f"export_iteration={self.export_iteration!r} must be best, last or a refined iteration "
                             "k >= 1.")
        bad = [k for k in self.refine_overrides if k not in REFINE_VARIANTS]
        if bad:
            raise ValueError(f"refine_overrides.{bad[0]}: not a refine variant ({', '.join(REFINE_VARIANTS)}).")

    @property
    def training(self) -> PPOSettings | GRPOSettings | RLOOSettings:
        """The settings section of the selected algorithm."""
        return getattr(self, self.algorithm)

    @property
    def trained_variants(self) -> list[str]:
        """Variants that run the RL algorithm (all but sft)."""
        return [v for v in self.variants if v != SFT]


def check_algorithm_overrides(config: AlignConfig, overrides: dict) -> None:
    """Refuse a command-line key of an algorithm's section when another algorithm is selected: it would do nothing.

    Args:
        config: The loaded config.
        overrides: The command-line overrides as a nested mapping (``refine.config_loading.parse_overrides``).

    Raises:
        ValueError: Naming the first such key, the selected algorithm and the valid choices. The keys of the ppo section
            that every algorithm uses (:data:`align.algorithms.SHARED_PPO_KEYS`) are always accepted.
    """
    for name in ALGORITHMS:
        given = overrides.get(name)
        if name == config.algorithm or not isinstance(given, dict):
            continue
        keys = [key for key in given if not (name == "ppo" and key in SHARED_PPO_KEYS)]
        if keys:
            raise ValueError(f"--{name}.{keys[0]} applies to algorithm {name}, but algorithm is {config.algorithm} "
                             f"(choices: {', '.join(ALGORITHMS)}); drop it, or pass --algorithm {name}.")
