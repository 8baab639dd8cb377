"""Dataclasses of the reward package: the ``silr`` block of an exported ``config.json``, and the server's limits.

The ``silr`` block is what turns a plain one-logit sequence classifier into a documented reward model: the score's
direction, the decision threshold and calibration statistics in reward units, and how texts were built and truncated
when the classifier was trained. It is plain JSON inside ``config.json``, so transformers keeps it on load and save.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

METADATA_KEY = "silr"  # attribute of the transformers config that holds RewardMetadata
FORMAT_VERSION = 1
DEFAULT_TEMPLATE = "User: {prompt}\nAssistant: {response}"

# Smallest calibration std that z-normalisation may divide by: rewards of a collapsed classifier can be constant, and
# dividing by ~0 would blow any reward up to +-inf.
MIN_CALIBRATION_STD = 1e-8


@dataclass
class Calibration:
    """Reward statistics over a calibration set, used for optional z-normalisation ``(reward - mean) / std``."""

    mean: float = field(metadata={"help": "Mean reward over the calibration set."})
    std: float = field(metadata={"help": "Standard deviation (ddof=0) of the reward over the calibration set."})
    n: int = field(metadata={"help": "Number of calibration texts."})
    source: str = field(default="", metadata={"help": "Where the statistics come from (file and split)."})
    quantiles: dict[str, float] = field(
        default_factory=dict, metadata={"help": "Reward quantiles of the calibration set, keyed q05, q50, q95."}
    )

    def __post_init__(self):
        if not (math.isfinite(self.mean) and math.isfinite(self.std)) or self.std < 0:
            raise ValueError(f"calibration mean={self.mean}, std={self.std} must be finite with std >= 0; re-export.")


@dataclass
class RewardMetadata:
    """The ``silr`` block of an exported reward model's ``config.json``."""

    higher_is_safer: bool = field(
        default=True, metadata={"help": "True: the logit is a reward (higher means safer). Always true for exports."}
    )
    score: Literal["reward"] = field(default="reward", metadata={"help": "What the single logit is."})
    threshold: float | None = field(
        default=None,
        metadata={"help": "Decision threshold in reward units: a text is judged unsafe iff reward < threshold."},
    )
    calibration: Calibration | None = field(default=None, metadata={"help": "Statistics for z-normalisation."})
    max_length: int = field(default=512, metadata={"help": "Tokens per text; longer texts are truncated."})
    truncation_side: Literal["right", "left"] = field(
        default="right",
        metadata={"help": "right: keep the first max_length tokens (as in training). left: keep the last ones."},
    )
    template: str = field(
        default=DEFAULT_TEMPLATE, metadata={"help": "How a prompt/response pair becomes one text ({prompt}, {response})."}
    )
    source: dict[str, Any] = field(
        default_factory=dict, metadata={"help": "Provenance: run directory, iteration, base model, head family."}
    )
    format_version: int = field(default=FORMAT_VERSION, metadata={"help": "Version of this block's layout."})

    def __post_init__(self):
        if isinstance(self.calibration, dict):
            self.calibration = Calibration(**self.calibration)
        check_template(self.template)
        if self.truncation_side not in ("right", "left"):
            raise ValueError(f"truncation_side={self.truncation_side!r} must be 'right' or 'left'.")
        if self.max_length < 1:
            raise ValueError(f"max_length={self.max_length} must be positive.")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RewardMetadata:
        """Read the block back; unknown keys (from a newer silr) are an error naming them."""
        known = set(cls.__dataclass_fields__)
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"unknown keys {unknown} in the config's `silr` block; upgrade silr or re-export the model.")
        return cls(**data)


def check_template(template: str) -> None:
    """Raise ValueError unless ``template`` formats with exactly the fields ``prompt`` and ``response``."""
    try:
        template.format(prompt="", response="")
    except (KeyError, IndexError, ValueError) as err:
        raise ValueError(
            f"template {template!r} must use only the fields {{prompt}} and {{response}} ({type(err).__name__}: {err})."
        ) from err
    if "{prompt}" not in template or "{response}" not in template:
        raise ValueError(f"template {template!r} must contain both {{prompt}} and {{response}}.")


@dataclass
class PairTrainingConfig:
    """``python -m reward train-pairs``: a reward model trained on preference pairs (:mod:`reward.pairs_training`)."""

    pairs: str = field(metadata={"help": "Preference pairs: HH-RLHF transcripts or prompt/chosen/rejected rows."})
    model_name_or_path: str = field(default="minilm", metadata={"help": "Base model: an alias (minilm) or a folder."})
    max_length: int = field(default=128, metadata={"help": "Tokens per prompt + answer text (right truncation)."})
    template: str = field(default=DEFAULT_TEMPLATE, metadata={"help": "How a prompt and an answer become one text."})
    held_out_fraction: float = field(default=0.2, metadata={"help": "Share of the prompts held out (0: none)."})
    max_pairs: int | None = field(default=None, metadata={"help": "Seeded sample of at most this many pairs."})
    columns: dict[str, str] = field(default_factory=dict, metadata={"help": "Column renames by role."})
    num_train_epochs: float = field(default=2.0, metadata={"help": "Passes over the training pairs."})
    learning_rate: float = field(default=5e-5, metadata={"help": "AdamW learning rate."})
    per_device_train_batch_size: int = field(default=16, metadata={"help": "Pairs per step and device."})
    warmup_ratio: float = field(default=0.1, metadata={"help": "Share of the steps with a linear warm-up."})
    weight_decay: float = field(default=0.0, metadata={"help": "AdamW weight decay."})
    bf16: bool = field(default=False, metadata={"help": "bf16 autocast (GPU, or a CPU with AVX512-BF16)."})
    gradient_checkpointing: bool = field(default=False, metadata={"help": "Recompute activations (less memory)."})
    logging_steps: int = field(default=20, metadata={"help": "Steps between loss and accuracy logs."})
    seed: int = field(default=0, metadata={"help": "Seed of the split, the sample, the head and the data order."})
    trust_remote_code: bool = field(default=False, metadata={"help": "Run the base model's own code (off)."})

    def __post_init__(self):
        check_template(self.template)
        if not 0.0 <= self.held_out_fraction < 1.0:
            raise ValueError(f"held_out_fraction={self.held_out_fraction} must lie in [0, 1), e.g. 0.2.")
        for name in ("max_length", "per_device_train_batch_size", "logging_steps"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name}={getattr(self, name)} must be positive.")
        if self.max_pairs is not None and self.max_pairs < 2:
            raise ValueError(f"max_pairs={self.max_pairs} must be at least 2 (or unset for all pairs).")
        if self.num_train_epochs <= 0 or self.learning_rate <= 0:
            raise ValueError(f"num_train_epochs={self.num_train_epochs} and learning_rate={self.learning_rate} must "
                             "be positive.")
        if not 0.0 <= self.warmup_ratio < 1.0:
            raise ValueError(f"warmup_ratio={self.warmup_ratio} must lie in [0, 1).")


@dataclass
class ServerConfig:
    """Limits of ``python -m reward serve``: every request beyond them is refused with a JSON error, never run."""

    max_batch: int = field(default=64, metadata={"help": "Most texts per request (more: HTTP 413)."})
    max_chars: int = field(default=20000, metadata={"help": "Most characters per text (more: HTTP 413)."})
    request_timeout: float = field(
        default=30.0,
        metadata={"help": "Seconds a client has to send a whole request (request line, headers and body), however "
                          "slowly its bytes arrive; a late body gets HTTP 408, a late request line or header a closed "
                          "connection, and so does a kept-alive connection idle this long. Also bounds each reply's "
                          "write."},
    )
    max_connections: int = field(
        default=64,
        metadata={"help": "Most connections served at once, one worker thread each; further connections wait in the "
                          "listen backlog until a worker is free."},
    )
    backlog: int = field(
        default=128,
        metadata={"help": "Connections the OS queues while every worker is busy (capped by net.core.somaxconn); a "
                          "burst beyond it may be reset. http.server's default of 5 resets most of 64 simultaneous "
                          "clients."},
    )

    def __post_init__(self):
        for name in ("max_batch", "max_chars", "max_connections", "backlog"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name}={getattr(self, name)} must be positive.")
        if not 0 < self.request_timeout < math.inf:
            raise ValueError(f"request_timeout={self.request_timeout} must be a positive, finite number of seconds.")

    @property
    def max_body_bytes(self) -> int:
        """Largest request body read: queries and prompts at the limits, each char JSON-escaped (\\uXXXX, 6 bytes)."""
        return 2 * self.max_batch * (6 * self.max_chars + 16) + 65536
