"""Configuration of `python -m refine`: nested dataclasses read from YAML (see ``refine.config_loading``).

Each field's ``help`` is its only documentation; ``python -m refine --help`` prints them all.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from refine.constants import MIN_PRIOR_GAP_FOR_LOSS
from refine.priors import PRIOR_METHODS

LOSSES = ("robust_uu", "uu", "pn", "gold", "labeled")


@dataclass
class DataConfig:
    """Where the corpus comes from, which columns hold what, and how it is split."""

    path: str = field(
        default="",
        metadata={"help": "Corpus file (.csv, .jsonl, .jsonl.gz, .json, .parquet) or a Hugging Face Hub dataset id. "
                  "${data_dir} expands to $SILR_DATA_DIR (default ../shared/data)."},
    )
    hub_split: str = field(default="train", metadata={"help": "Split to read when `path` is a Hub dataset id."})
    format: Literal["table", "xstest"] = field(
        default="table",
        metadata={"help": "table: one file (or Hub data set) with a row per text. xstest: the XSTest folder "
                  "(../shared/data/xstest): one row per (prompt, answer) with columns prompt, response, prompt_id, "
                  "prompt_label, gold_answer, gpt4_answer, strmatch_answer (unsafe = the answer complies with an "
                  "unsafe prompt or refuses a safe one; see refine/xstest.py)."},
    )
    text_column: str | None = field(
        default="text",
        metadata={"help": "Column holding the text. Null when prompt_column/response_column are set."},
    )
    prompt_column: str | None = field(default=None, metadata={"help": "Prompt column of prompt/response pairs."})
    response_column: str | None = field(default=None, metadata={"help": "Response column of prompt/response pairs."})
    template: str = field(
        default="User: {prompt}\nAssistant: {response}",
        metadata={"help": "How a prompt/response pair becomes one text; the reward model uses the same template."},
    )
    label_columns: list[str] = field(
        default_factory=list,
        metadata={"help": "Gold label column(s). With several, a text is unsafe if any column holds a positive value; "
                  "it is safe if at least one is filled and none is positive. Empty: no gold labels."},
    )
    positive_values: list[Any] = field(
        default_factory=lambda: [1], metadata={"help": "Values of the label column(s) that mean unsafe."}
    )
    negative_values: list[Any] | None = field(
        default=None,
        metadata={"help": "Values that mean safe. Null: any filled value that is not positive. When set, any other "
                  "value is an error (catches a label column that is not binary as expected)."},
    )
    group_column: str | None = field(
        default=None,
        metadata={"help": "Rows sharing a value of this column fall in the same split (e.g. prompt_id: every answer "
                  "to a test prompt is in the test split, so test prompts are unseen). Null: rows split alone."},
    )
    max_examples: int | None = field(
        default=None, metadata={"help": "Use a seeded random sample of this many rows (null: all rows)."}
    )
    test_fraction: float = field(
        default=0.3,
        metadata={"help": "Share of gold-labelled rows held out as the test split: used for evaluation only, never "
                  "for training, priors or selection."},
    )
    num_labeled: int = field(
        default=50,
        metadata={"help": "Size of the labelled set L, drawn at random (not class-balanced) from the gold-labelled "
                  "training rows. Used to estimate priors (and, if train.labeled_weight > 0, in the objective)."},
    )
    sample_seed: int = field(default=0, metadata={"help": "Seed of the max_examples sample (fixed across split seeds)."})
    seed: int = field(default=0, metadata={"help": "Seed of the test split and of the labelled set L."})

    def __post_init__(self):
        if not 0.0 <= self.test_fraction < 1.0:
            raise ValueError(f"test_fraction={self.test_fraction} must lie in [0, 1).")
        if self.num_labeled < 2:
            raise ValueError(f"num_labeled={self.num_labeled} must be at least 2 to estimate priors.")
        if self.text_column is None and not (self.prompt_column and self.response_column):
            raise ValueError("set text_column, or both prompt_column and response_column.")
        if self.max_examples is not None and self.max_examples < 1:
            raise ValueError(f"max_examples={self.max_examples} must be positive or null.")


@dataclass
class AnnotatorConfig:
    """The source of pseudo-labels (U1 = pseudo-unsafe, U2 = pseudo-safe)."""

    kind: Literal["embedding", "hf", "openai", "column", "simulated"] = field(
        default="embedding",
        metadata={"help": "embedding: zero-shot MiniLM similarity to class descriptions (not an LLM; offline). "
                  "hf: a local causal LM asked Yes/No. openai: an OpenAI-compatible chat server. "
                  "column: labels already in the data. simulated: research only, gold labels flipped at random with "
                  "class-conditional rates (needs gold on every row)."},
    )
    model_name_or_path: str | None = field(
        default=None,
        metadata={"help": "hf: causal LM folder or Hub id (null: packaged SmolLM2-135M-Instruct). embedding: "
                  "sentence encoder (null: the classifier's encoder). openai: the served model's name."},
    )
    gguf_file: str | None = field(default=None, metadata={"help": "hf: GGUF file inside model_name_or_path."})
    column: str | None = field(default=None, metadata={"help": "column: the column holding pseudo-labels."})
    column_positive_values: list[Any] = field(
        default_factory=lambda: [1], metadata={"help": "column: values that mean pseudo-unsafe."}
    )
    column_negative_values: list[Any] | None = field(
        default=None,
        metadata={"help": "column: values that mean pseudo-safe. Null: every value that is not positive. When set, "
                  "a value in neither list (a judge that replied with free text instead of a class) is counted, "
                  "logged on one line, and handled by column_other."},
    )
    column_other: Literal["error", "abstain", "unsafe", "safe"] = field(
        default="error",
        metadata={"help": "column, with column_negative_values: what a value in neither list becomes. error: stop "
                  "and name the values. abstain: no pseudo-label; the text is in neither U1 nor U2 at iteration 0 "
                  "(nor in the annotator's own metrics) and gets its label from iteration 1's classifier. unsafe / "
                  "safe: read as that class (e.g. a judge declining to rate an answer read as a flag)."},
    )
    threshold: Literal["zero", "positive_fraction", "labeled_prior"] = field(
        default="zero",
        metadata={"help": "How scores become labels. zero: score > 0 (argmax Yes/No). positive_fraction: the top "
                  "`positive_fraction` of scores. labeled_prior: the top share equal to the unsafe rate of L."},
    )
    positive_fraction: float | None = field(
        default=None, metadata={"help": "Share labelled unsafe when threshold=positive_fraction."}
    )
    instruction: str = field(
        default="Is the following text unsafe (hateful, harassing, sexual, violent, self-harm, or otherwise harmful)? "
        "Answer Yes or No.",
        metadata={"help": "hf/openai: the question put to the LLM before each text."},
    )
    few_shot: list[dict] = field(
        default_factory=lambda: [
            {"text": "I will find where you live and hurt your family.", "label": "Yes"},
            {"text": "What is a good recipe for banana bread?", "label": "No"},
        ],
        metadata={"help": "hf/openai: example turns, each {text, label} with label Yes or No."},
    )
    unsafe_descriptions: list[str] = field(
        default_factory=lambda: [
            "hateful or harassing text that insults people",
            "sexually explicit content",
            "violent threats or graphic violence",
            "self-harm or suicide",
        ],
        metadata={"help": "embedding: short descriptions of unsafe text."},
    )
    safe_descriptions: list[str] = field(
        default_factory=lambda: [
            "a harmless everyday message",
            "a polite neutral question or statement",
            "a factual informational text",
            "a friendly conversation",
            "a personal story about everyday life",
            "a question asking for advice or help",
            "an opinion about news, politics or society",
            "a text about work, school, technology or hobbies",
        ],
        metadata={"help": "embedding: short descriptions of safe text. Covering the topics of ordinary text keeps "
                  "score > 0 from flagging most of it (openai_moderation: 54% flagged instead of 71%)."},
    )
    max_length: int = field(default=256, metadata={"help": "Tokens of text shown to the annotator (truncated)."})
    batch_size: int = field(default=16, metadata={"help": "hf/embedding: texts per forward pass."})
    base_url: str | None = field(
        default=None, metadata={"help": "openai: server root, e.g. http://127.0.0.1:8000/v1."}
    )
    api_key_env: str = field(
        default="OPENAI_API_KEY",
        metadata={"help": "openai: name of the environment variable holding the API key (the key is never logged "
                  "or written)."},
    )
    max_concurrency: int = field(default=8, metadata={"help": "openai: requests in flight at once."})
    max_retries: int = field(default=5, metadata={"help": "openai: retries on 429/5xx/connection errors."})
    request_timeout: float = field(default=60.0, metadata={"help": "openai: seconds per request."})
    trust_remote_code: bool = field(
        default=False, metadata={"help": "hf: allow code shipped with the model to run. Off unless you trust it."}
    )
    flip_unsafe: float = field(
        default=0.3, metadata={"help": "simulated: share of unsafe texts labelled safe (P(s=-1 | y=+1))."}
    )
    flip_safe: float = field(
        default=0.1, metadata={"help": "simulated: share of safe texts labelled unsafe (P(s=+1 | y=-1))."}
    )
    noise_seed: int = field(default=0, metadata={"help": "simulated: seed of the label flips."})

    def __post_init__(self):
        for name in ("flip_unsafe", "flip_safe"):
            if not 0.0 <= getattr(self, name) < 1.0:
                raise ValueError(f"{name}={getattr(self, name)} must lie in [0, 1).")
        if self.kind == "simulated" and self.flip_unsafe + self.flip_safe >= 1.0:
            raise ValueError(
                f"flip_unsafe + flip_safe = {self.flip_unsafe + self.flip_safe:.2f} must be below 1, or the simulated "
                "labels carry no signal (or inverted signal)."
            )
        if self.threshold == "positive_fraction" and not (
            self.positive_fraction is not None and 0.0 < self.positive_fraction < 1.0
        ):
            raise ValueError("threshold=positive_fraction needs positive_fraction in (0, 1).")
        for name in ("max_length", "batch_size", "max_concurrency"):
            if getattr(self, name) < 1:
                raise ValueError(f"annotator {name}={getattr(self, name)} must be at least 1.")
        if self.max_retries < 0 or not self.request_timeout > 0:
            raise ValueError("annotator max_retries must be >= 0 and request_timeout positive.")
        if self.kind == "column" and not self.column:
            raise ValueError("kind=column needs `column`, the column holding pseudo-labels.")
        if self.column_other != "error" and self.column_negative_values is None:
            raise ValueError(f"column_other={self.column_other} needs column_negative_values: without them every "
                             "value that is not positive is read as safe, so no value is left over.")
        if self.kind == "openai" and not (self.base_url and self.model_name_or_path):
            raise ValueError("kind=openai needs base_url and model_name_or_path (the served model's name).")
        for shot in self.few_shot:
            if set(shot) != {"text", "label"} or shot["label"] not in ("Yes", "No"):
                raise ValueError(f"few_shot entry {shot!r} must be {{text: ..., label: Yes|No}}.")


@dataclass
class PriorsConfig:
    """How pi, theta1 and theta2 are obtained each iteration."""

    method: Literal["consistent", "direct", "oracle"] = field(
        default="consistent",
        metadata={"help": f"{' | '.join(PRIOR_METHODS)}. consistent: theta from L, pi = theta1*rho + "
                  "theta2*(1-rho). oracle counts all gold labels of the corpus (research comparison only)."},
    )
    pi: float | None = field(default=None, metadata={"help": "Fixed pi for the first iteration (null: estimate)."})
    theta1: float | None = field(default=None, metadata={"help": "Fixed theta1 for the first iteration."})
    theta2: float | None = field(default=None, metadata={"help": "Fixed theta2 for the first iteration."})
    min_prior_gap: float = field(
        default=0.1,
        metadata={"help": "Stop when |theta1 - theta2| is below this: the UU coefficients scale as 1/gap and the "
                  "two sets no longer differ enough to learn from."},
    )
    min_labeled_per_set: int = field(
        default=3,
        metadata={"help": "Fewest texts of L that must fall in each of U1 and U2 for theta1 and theta2 to count as "
                  "estimated: with fewer, add-one smoothing alone sets the estimate (0.5 from zero texts, with a "
                  "bootstrap interval of zero width), which is no evidence. The run stops then (with "
                  "unconfirmed_signal: warn it goes on with a warning); a refined iteration in that state counts as "
                  "carrying no usable signal."},
    )
    interval_level: float = field(default=0.9, metadata={"help": "Level of the bootstrap intervals."})
    unconfirmed_signal: Literal["stop", "warn"] = field(
        default="stop",
        metadata={"help": "When the interval of theta1 - theta2 for the annotator's labels includes 0, the labelled "
                  "set cannot confirm that the annotator beats chance, and no refined result would be evidence. "
                  "stop: end the run with the numbers (the default). warn: refine anyway."},
    )

    def __post_init__(self):
        fixed = [self.pi, self.theta1, self.theta2]
        if any(v is not None for v in fixed) and not all(v is not None for v in fixed):
            raise ValueError("set all three of pi, theta1, theta2, or none.")
        if all(v is not None for v in fixed):
            for name, v in (("pi", self.pi), ("theta1", self.theta1), ("theta2", self.theta2)):
                if not 0.0 <= v <= 1.0:
                    raise ValueError(f"{name}={v} must lie in [0, 1].")
            if not self.theta1 > self.theta2 + MIN_PRIOR_GAP_FOR_LOSS:
                raise ValueError(
                    f"theta1={self.theta1} must be greater than theta2={self.theta2}: the pseudo-unsafe set must hold "
                    "more unsafe text than the pseudo-safe set; check the labels are not swapped."
                )
        if not 0.0 < self.min_prior_gap < 1.0:
            raise ValueError(f"min_prior_gap={self.min_prior_gap} must lie in (0, 1).")
        if self.min_labeled_per_set < 1:
            raise ValueError(f"min_labeled_per_set={self.min_labeled_per_set} must be at least 1.")
        if not 0.5 <= self.interval_level < 1.0:
            raise ValueError(f"interval_level={self.interval_level} must lie in [0.5, 1).")


@dataclass
class ClassifierConfig:
    """The safety classifier: a Hugging Face sequence classifier with one logit (``unsafe_logit``)."""

    model_name_or_path: str = field(
        default="minilm",
        metadata={"help": "Folder or Hub id of the base model. `minilm` is the packaged all-MiniLM-L6-v2."},
    )
    backbone: Literal["frozen", "finetune"] = field(
        default="frozen",
        metadata={"help": "frozen: encoder features computed once and cached, only the model's own head is trained "
                  "(fast on CPU). finetune: the whole model (or LoRA adapters) is trained each iteration by a "
                  "transformers Trainer with the same objective; options in the `finetune` section."},
    )
    max_length: int = field(default=256, metadata={"help": "Tokens per text; longer texts are truncated."})
    encode_batch_size: int = field(default=64, metadata={"help": "Texts per forward pass when computing features."})
    trust_remote_code: bool = field(
        default=False, metadata={"help": "Allow code shipped with the model to run. Off unless you trust it."}
    )

    def __post_init__(self):
        for name in ("max_length", "encode_batch_size"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name}={getattr(self, name)} must be at least 1, e.g. max_length 128 and "
                                 "encode_batch_size 64.")


@dataclass
class TrainConfig:
    """Training of one classifier (one iteration)."""

    loss: Literal["robust_uu", "uu", "pn", "gold", "labeled"] = field(
        default="robust_uu",
        metadata={"help": "robust_uu: the paper's objective. uu: uncorrected UU. pn: supervised on pseudo-labels "
                  "(vanilla). gold: supervised on corpus gold labels (ceiling). labeled: supervised on L alone."},
    )
    gamma: float = field(
        default=-0.001, metadata={"help": "Slope applied to a negative partial risk (0 clips; < 0 penalises)."}
    )
    surrogate: Literal["sigmoid", "logistic"] = field(
        default="sigmoid",
        metadata={"help": "Pointwise loss inside every risk. sigmoid: sigmoid(-y g), the paper's (with it the UU "
                  "risk is a class-weighted pn risk). logistic: log(1 + exp(-y g)), binary cross-entropy. Fine-tuning "
                  "an encoder with the sigmoid loss can sink every logit to one side, where its gradient vanishes "
                  "(a constant classifier; measured on XSTest answers for pn, robust_uu and gold); the logistic loss "
                  "does not saturate there."},
    )
    labeled_weight: float = field(
        default=0.0,
        metadata={"help": "lambda of the semi-supervised objective: risk + lambda * (supervised risk on L). 0: L is "
                  "used only for the priors."},
    )
    learning_rate: float = field(default=1e-3, metadata={"help": "AdamW learning rate of the head."})
    weight_decay: float = field(default=1e-4, metadata={"help": "AdamW weight decay."})
    num_train_epochs: int = field(default=40, metadata={"help": "Epochs per iteration."})
    batch_size: int = field(default=128, metadata={"help": "Texts per optimisation step."})
    validation_fraction: float = field(
        default=0.125,
        metadata={"help": "Share of the corpus held out, with its pseudo-labels, to pick the epoch with the lowest "
                  "validation risk. No gold label is used."},
    )
    selection: Literal["validation", "labeled"] = field(
        default="validation",
        metadata={"help": "Which epoch to keep. validation: lowest training risk on the pseudo-labelled validation "
                  "rows (no gold). labeled: lowest supervised risk on the gold labels of L (uses L for model "
                  "selection; helps when the split is learnable exactly and the validation risk is flat at 0)."},
    )
    threshold: Literal["zero", "prior_match"] = field(
        default="zero",
        metadata={"help": "Decision rule for relabelling. zero: sign(g). prior_match: the top share pi of the corpus "
                  "(pi from the current priors)."},
    )
    seed: int = field(default=0, metadata={"help": "Seed of head initialisation and batch order."})

    def __post_init__(self):
        if not 0.0 < self.validation_fraction < 0.5:
            raise ValueError(f"validation_fraction={self.validation_fraction} must lie in (0, 0.5).")
        if self.labeled_weight < 0:
            raise ValueError(f"labeled_weight={self.labeled_weight} must be >= 0.")
        for name in ("learning_rate", "num_train_epochs", "batch_size"):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name}={getattr(self, name)} must be positive.")


@dataclass
class FinetuneConfig:
    """Fine-tuning backbone (``classifier.backbone: finetune``): a transformers Trainer per iteration.

    Field names follow ``transformers.TrainingArguments``; the objective, gamma, labeled_weight, validation split,
    decision threshold and seed come from the ``train`` section, shared with the frozen backbone.
    """

    per_device_train_batch_size: int = field(default=32, metadata={"help": "Corpus texts per device per step."})
    per_device_eval_batch_size: int = field(
        default=64, metadata={"help": "Texts per device per forward pass for validation and relabelling."}
    )
    gradient_accumulation_steps: int = field(
        default=1,
        metadata={"help": "Micro-batches per optimiser step. The robust risk is computed per micro-batch (its "
                  "correction is applied to each micro-batch's partial risks), then averaged."},
    )
    num_train_epochs: float = field(default=3.0, metadata={"help": "Epochs per iteration."})
    learning_rate: float = field(default=2e-5, metadata={"help": "Peak learning rate (1e-4 for LoRA in the paper)."})
    lr_scheduler_type: str = field(default="linear", metadata={"help": "linear, cosine, constant, ..."})
    warmup_ratio: float = field(default=0.0, metadata={"help": "Share of the steps spent in linear warmup."})
    weight_decay: float = field(default=0.0, metadata={"help": "AdamW weight decay."})
    max_grad_norm: float = field(default=1.0, metadata={"help": "Gradient clipping norm."})
    optim: str = field(
        default="adamw_torch",
        metadata={"help": "Optimizer name, as in TrainingArguments (paged_adamw_32bit needs bitsandbytes)."},
    )
    bf16: bool = field(default=False, metadata={"help": "bfloat16 mixed precision (GPU); the classifier is saved in "
                                                "bfloat16."})
    fp16: bool = field(default=False, metadata={"help": "float16 mixed precision (GPU); the classifier is saved in "
                                                "float32."})
    gradient_checkpointing: bool = field(
        default=False, metadata={"help": "Recompute activations in the backward pass: less memory, ~30% slower."}
    )
    group_by_length: bool = field(
        default=True,
        metadata={"help": "Batch texts of similar length together (with dynamic padding), so little compute goes "
                  "to padding."},
    )
    report_to: list[str] = field(
        default_factory=lambda: ["none"], metadata={"help": "Trackers: none, tensorboard, wandb, ..."}
    )
    logging_steps: int = field(default=10, metadata={"help": "Optimiser steps between training-risk logs."})
    dataloader_num_workers: int = field(default=0, metadata={"help": "Data-loading worker processes."})
    deepspeed: str | None = field(
        default=None,
        metadata={"help": "DeepSpeed JSON config path (or use an accelerate_configs/deepspeed_*.yaml launch profile)."},
    )
    save_total_limit: int | None = field(
        default=1,
        metadata={"help": "Checkpoints kept per iteration (the best one is always kept). Checkpoints let an "
                  "interrupted iteration resume and are deleted once the iteration is saved."},
    )
    lora_r: int = field(default=0, metadata={"help": "LoRA rank; 0 fine-tunes every parameter."})
    lora_alpha: int = field(default=32, metadata={"help": "LoRA scaling alpha."})
    lora_dropout: float = field(default=0.05, metadata={"help": "Dropout on the LoRA inputs."})
    lora_target_modules: list[str] | None = field(
        default=None,
        metadata={"help": "Module names that get LoRA adapters (e.g. [q_proj, v_proj], or [all-linear]); null: "
                  "peft's default for the architecture. The classification head is always trained and saved."},
    )
    load_in_4bit: bool = field(
        default=False,
        metadata={"help": "QLoRA: load the base model in 4-bit NF4 with bitsandbytes (CUDA GPU only; needs lora_r > "
                  "0). The saved classifier, which makes the iteration's scores, merges the adapters into an "
                  "unquantized copy of the base (bfloat16 with bf16, else float32)."},
    )
    bnb_4bit_compute_dtype: Literal["bfloat16", "float16", "float32"] = field(
        default="bfloat16", metadata={"help": "Compute dtype of the 4-bit layers."}
    )
    labeled_per_step: int | None = field(
        default=8,
        metadata={"help": "With train.labeled_weight > 0: rows of L (drawn without replacement, cycling through "
                  "seeded shuffles) appended to every training micro-batch for the lambda * PN-risk term. null: all "
                  "of L every step, as the frozen backbone does."},
    )
    frozen_baselines: bool = field(
        default=True,
        metadata={"help": "Also compute the base model's frozen features (cached) to report the L-only and gold "
                  "baselines. false skips that encoder pass (and the baselines) unless the embedding annotator "
                  "needs the features."},
    )

    def __post_init__(self):
        for name in ("per_device_train_batch_size", "per_device_eval_batch_size", "gradient_accumulation_steps",
                     "num_train_epochs", "learning_rate", "logging_steps"):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name}={getattr(self, name)} must be positive.")
        if not 0.0 <= self.warmup_ratio < 1.0:
            raise ValueError(f"warmup_ratio={self.warmup_ratio} must lie in [0, 1).")
        if self.bf16 and self.fp16:
            raise ValueError("bf16 and fp16 are both true; choose one mixed-precision mode.")
        if self.lora_r < 0:
            raise ValueError(f"lora_r={self.lora_r} must be >= 0 (0: full fine-tune).")
        if self.load_in_4bit and self.lora_r == 0:
            raise ValueError("load_in_4bit needs LoRA adapters (4-bit weights cannot be trained); set lora_r, e.g. 8.")
        if self.labeled_per_step is not None and self.labeled_per_step < 1:
            raise ValueError(f"labeled_per_step={self.labeled_per_step} must be >= 1 or null.")


@dataclass
class LoopConfig:
    """The relabel-and-retrain loop."""

    iterations: int = field(default=5, metadata={"help": "Relabel-and-retrain iterations T."})
    early_stop_flip_fraction: float | None = field(
        default=None, metadata={"help": "Stop when fewer than this share of corpus labels flip (null: never)."}
    )
    patience: int | None = field(
        default=None,
        metadata={"help": "Stop when the accuracy on L has not improved for this many iterations (null: run all T). "
                  "The exported classifier is the iteration best on L either way. Ignored, with a warning, while L "
                  "is trained on (train.labeled_weight > 0, or loss gold/labeled), since its accuracy is then no "
                  "guide."},
    )

    def __post_init__(self):
        if self.iterations < 1:
            raise ValueError(f"iterations={self.iterations} must be at least 1.")
        if self.early_stop_flip_fraction is not None and not 0.0 <= self.early_stop_flip_fraction <= 1.0:
            raise ValueError(f"early_stop_flip_fraction={self.early_stop_flip_fraction} must lie in [0, 1].")
        if self.patience is not None and self.patience < 1:
            raise ValueError(f"patience={self.patience} must be at least 1 or null.")


@dataclass
class RefineConfig:
    """Options of `python -m refine`: annotate a corpus, then refine the labels with robust UU learning."""

    name: str = field(default="refine", metadata={"help": "Run name; the run directory is runs/<name>."})
    output_dir: str | None = field(default=None, metadata={"help": "Run directory (null: runs/<name>)."})
    overwrite_output_dir: bool = field(
        default=False,
        metadata={"help": "Start over: replace this run's stages whose config changed, instead of refusing."},
    )
    cache_dir: str | None = field(
        default=None,
        metadata={"help": "Cache of per-text work that does not depend on splits or thresholds: encoder features and "
                  "annotator scores (null: <output_dir>/cache). Runs on the same corpus can share one."},
    )
    data: DataConfig = field(default_factory=DataConfig)
    annotator: AnnotatorConfig = field(default_factory=AnnotatorConfig)
    priors: PriorsConfig = field(default_factory=PriorsConfig)
    classifier: ClassifierConfig = field(default_factory=ClassifierConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    finetune: FinetuneConfig = field(default_factory=FinetuneConfig)
    loop: LoopConfig = field(default_factory=LoopConfig)

    def __post_init__(self):
        if self.output_dir is None:
            self.output_dir = f"runs/{self.name}"
