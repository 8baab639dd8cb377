"""Batched reward scoring with an exported reward model (or a plain one-logit classifier whose direction is given).

Texts are tokenized once, grouped into batches of similar length (longest first) and padded per batch on the right,
so padding wastes little compute and never changes a score. Texts longer than ``max_length`` tokens are truncated
from ``truncation_side``: ``right`` (the default, as in training) keeps the beginning of the text. Rewards come back in
input order as float64 arrays; higher means safer (see the package docstring).

Only safetensors weights are loaded: pickle files (``pytorch_model.bin``) can run arbitrary code and are refused.
"""

from __future__ import annotations

import dataclasses
import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from refine.encoder import length_sorted_batches
from refine.errors import SilrError, naming_weight_errors, one_line
from refine.transformers_setup import load_classifier_tokenizer
from reward.config import METADATA_KEY, MIN_CALIBRATION_STD, RewardMetadata

logger = logging.getLogger(__name__)

SAFE_WEIGHTS = ("model.safetensors", "model.safetensors.index.json")
PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt", ".pkl")


def check_weights_folder(path: str | os.PathLike) -> Path:
    """Return ``path`` as a Path if it is a local model folder with ``config.json`` and safetensors weights.

    Raises:
        FileNotFoundError: If the folder or its ``config.json`` does not exist.
        ValueError: If the folder holds only pickle weights, or no weights at all.
    """
    folder = Path(path)
    if not folder.is_dir():
        raise FileNotFoundError(f"reward model folder {folder} not found; pass a folder written by `python -m reward export`.")
    if not (folder / "config.json").is_file():
        raise FileNotFoundError(f"{folder / 'config.json'} not found; {folder} is not a Hugging Face model folder.")
    if any((folder / name).is_file() for name in SAFE_WEIGHTS):
        return folder
    pickles = sorted(p.name for p in folder.iterdir() if p.suffix in PICKLE_SUFFIXES)
    if pickles:
        raise ValueError(
            f"{folder} holds only pickle weights ({', '.join(pickles)}); silr loads safetensors only, because pickle "
            "can run code. Convert it once where you trust it: from_pretrained(...).save_pretrained(dir)."
        )
    raise ValueError(f"no model.safetensors in {folder}; export the model with `python -m reward export`.")


def _check_sequence_classifier(folder: Path, config) -> None:
    architectures = list(getattr(config, "architectures", None) or [])
    if architectures and not any(a.endswith("ForSequenceClassification") for a in architectures):
        raise ValueError(
            f"{folder} holds a {architectures[0]}, not a sequence classifier; export a reward model with "
            "`python -m reward export`."
        )
    if config.num_labels != 1:
        raise ValueError(
            f"{folder} is a classifier with num_labels={config.num_labels}, not a one-logit reward model; export one "
            "with `python -m reward export`, or retrain with num_labels=1."
        )


def _read_metadata(folder: Path, config, tokenizer, higher_is_safer: bool | None) -> RewardMetadata:
    block = getattr(config, METADATA_KEY, None)
    if block is not None:
        try:
            if not isinstance(block, dict):
                raise TypeError(f"a {type(block).__name__}, not a mapping")
            metadata = RewardMetadata.from_dict(block)
        except (TypeError, AttributeError) as err:  # hand-edited: a value of the wrong type, a missing field
            raise ValueError(f"the `{METADATA_KEY}` block of {folder / 'config.json'} is malformed "
                             f"({one_line(err)}); re-export the model with `python -m reward export`.") from err
        if higher_is_safer is not None and higher_is_safer != metadata.higher_is_safer:
            raise ValueError(
                f"higher_is_safer={higher_is_safer} contradicts {folder}'s silr metadata "
                f"(higher_is_safer={metadata.higher_is_safer}); drop the argument."
            )
        return metadata
    if higher_is_safer is None:
        raise ValueError(
            f"score direction unknown: {folder} has no silr metadata; pass higher_is_safer=True if its logit rises "
            "with safety, or False if it rises with harm."
        )
    limits = [n for n in (tokenizer.model_max_length, getattr(config, "max_position_embeddings", None)) if n]
    return RewardMetadata(higher_is_safer=higher_is_safer, max_length=int(min(limits + [512])),
                          source={"model": str(folder), "metadata": "none (direction given by the caller)"})


class RewardModel:
    """Texts or prompt/response pairs → rewards (higher means safer), batched with dynamic padding.

    Build it with :meth:`from_pretrained`. Not thread-safe: callers that share one instance across threads must
    serialise calls (the server holds a lock).

    Attributes:
        model: The ``AutoModelForSequenceClassification`` (one logit), in eval mode.
        tokenizer: Its tokenizer, set to pad on the right and truncate from ``metadata.truncation_side``.
        metadata: Direction, threshold, calibration, template and provenance (:class:`RewardMetadata`).
        normalize: Whether scores are z-normalised with ``metadata.calibration``.
        batch_size: Texts per forward pass.
    """

    def __init__(self, model, tokenizer, metadata: RewardMetadata, *, normalize: bool = False, batch_size: int = 32):
        if batch_size < 1:
            raise ValueError(f"batch_size={batch_size} must be positive.")
        if normalize and metadata.calibration is None:
            raise ValueError("normalize=True needs calibration statistics, and this model has none; pass normalize=False.")
        if normalize and metadata.calibration.std < MIN_CALIBRATION_STD:
            raise ValueError(
                f"calibration std={metadata.calibration.std:.3g} is ~0 (constant rewards), so z-normalisation is "
                "undefined; pass normalize=False."
            )
        self.model = model.eval()
        self.tokenizer = tokenizer
        self.metadata = metadata
        self.normalize = normalize
        self.batch_size = batch_size
        tokenizer.padding_side = "right"
        tokenizer.truncation_side = metadata.truncation_side

    @classmethod
    def from_pretrained(
        cls,
        path: str | os.PathLike,
        *,
        normalize: bool = False,
        batch_size: int = 32,
        device: str | torch.device | None = None,
        higher_is_safer: bool | None = None,
        max_length: int | None = None,
        truncation_side: str | None = None,
        template: str | None = None,
    ) -> RewardModel:
        """Load a reward model folder (safetensors only, no remote code).

        Args:
            path: A folder from ``python -m reward export``, or any local one-logit sequence classifier folder.
            normalize: Return ``(reward - mean) / std`` with the calibration statistics stored at export.
            batch_size: Texts per forward pass.
            device: Where the model runs; None picks ``cuda`` when available, else ``cpu``.
            higher_is_safer: Required for a classifier without silr metadata: True if its logit rises with safety,
                False if it rises with harm (the score is then negated). For a silr export it may only repeat True.
            max_length: Override the stored token limit per text.
            truncation_side: Override the stored side (``right`` keeps the beginning, ``left`` the end).
            template: Override the stored prompt/response template (fields ``{prompt}`` and ``{response}``).

        Raises:
            FileNotFoundError: If the folder or its config is missing.
            ValueError: On pickle-only weights, a classifier that is not one-logit, missing head weights, an unknown
                score direction, or normalisation without calibration.
        """
        from transformers import AutoConfig, AutoModelForSequenceClassification

        device = check_device(device)  # before any weights are read

        folder = check_weights_folder(path)
        try:
            config = AutoConfig.from_pretrained(folder)
        except (ValueError, KeyError) as err:
            raise ValueError(f"cannot read {folder / 'config.json'} without remote code ({err}); use a standard "
                             "transformers architecture.") from err
        _check_sequence_classifier(folder, config)
        try:
            tokenizer = load_classifier_tokenizer(folder)  # right padding; EOS as pad token when it has none
        except SilrError:
            raise  # a tokenizer without pad and EOS token, named
        except (OSError, ValueError, TypeError) as err:
            raise ValueError(f"no usable tokenizer in {folder} ({type(err).__name__}); save the tokenizer there.") from err
        metadata = _read_metadata(folder, config, tokenizer, higher_is_safer)
        overrides = {"max_length": max_length, "truncation_side": truncation_side, "template": template}
        metadata = dataclasses.replace(metadata, **{k: v for k, v in overrides.items() if v is not None})  # validates
        with naming_weight_errors(folder, "re-export the model."):
            model, info = AutoModelForSequenceClassification.from_pretrained(
                folder, use_safetensors=True, output_loading_info=True
            )
        if info["missing_keys"]:
            missing = sorted(info["missing_keys"])
            raise ValueError(
                f"{folder} lacks weights for {missing[:3]} (they would be random); it is not a trained classifier. "
                "Export one with `python -m reward export`."
            )
        if model.config.pad_token_id is None:
            model.config.pad_token_id = tokenizer.pad_token_id
        return cls(model.to(device), tokenizer, metadata, normalize=normalize, batch_size=batch_size)

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    @property
    def max_length(self) -> int:
        return self.metadata.max_length

    def format_pair(self, prompt: str, response: str) -> str:
        """The text the classifier reads for a prompt/response pair (the training template)."""
        return self.metadata.template.format(prompt=prompt, response=response)

    def normalize_rewards(self, rewards: np.ndarray) -> np.ndarray:
        """``(reward - mean) / std`` with the stored calibration statistics."""
        calibration = self.metadata.calibration
        if calibration is None:
            raise ValueError("this reward model has no calibration statistics; score without normalisation.")
        return (np.asarray(rewards, dtype=np.float64) - calibration.mean) / max(calibration.std, MIN_CALIBRATION_STD)

    def score(self, texts: Sequence[str], *, progress: bool = False, normalize: bool | None = None) -> np.ndarray:
        """Rewards of ``texts``, shape ``(len(texts),)``.

        Args:
            texts: The texts, already built with the template if they are prompt/response pairs.
            progress: Show a tqdm bar.
            normalize: z-normalise; None uses the setting the model was loaded with.
        """
        texts = _check_texts(texts)
        if not texts:
            return np.zeros(0, dtype=np.float64)
        encoded = self.tokenizer(texts, truncation=True, max_length=self.max_length)
        rows = [{key: encoded[key][i] for key in encoded} for i in range(len(texts))]
        return self._finish(self._run(rows, progress=progress), normalize)

    def score_pairs(self, prompts: Sequence[str], responses: Sequence[str], *, progress: bool = False) -> np.ndarray:
        """Rewards of prompt/response pairs joined with the stored template."""
        prompts, responses = _check_texts(prompts, "prompts"), _check_texts(responses, "responses")
        if len(prompts) != len(responses):
            raise ValueError(f"{len(prompts)} prompts but {len(responses)} responses; pass one response per prompt.")
        return self.score([self.format_pair(p, r) for p, r in zip(prompts, responses, strict=True)], progress=progress)

    def score_token_ids(self, sequences: Sequence[Sequence[int]]) -> np.ndarray:
        """Rewards of already tokenized sequences (no padding inside), truncated to ``max_length`` like texts."""
        rows = []
        for ids in sequences:
            ids = list(ids)
            if len(ids) > self.max_length:
                ids = ids[: self.max_length] if self.metadata.truncation_side == "right" else ids[-self.max_length :]
            rows.append({"input_ids": ids, "attention_mask": [1] * len(ids)})
        return self._finish(self._run(rows, progress=False)) if rows else np.zeros(0, dtype=np.float64)

    def raw_to_reward(self, logits: np.ndarray) -> np.ndarray:
        """The model's logits as rewards: the logit itself for silr exports, negated if it rises with harm."""
        logits = np.asarray(logits, dtype=np.float64)
        return logits if self.metadata.higher_is_safer else -logits

    def _finish(self, logits: np.ndarray, normalize: bool | None = None) -> np.ndarray:
        rewards = self.raw_to_reward(logits)
        return self.normalize_rewards(rewards) if (self.normalize if normalize is None else normalize) else rewards

    @torch.inference_mode()
    def _run(self, rows: list[dict[str, Any]], *, progress: bool) -> np.ndarray:
        lengths = [len(row["input_ids"]) for row in rows]
        at_limit = sum(length >= self.max_length for length in lengths)
        if at_limit:
            logger.info("%d of %d texts reached max_length=%d tokens and were truncated on the %s", at_limit,
                        len(rows), self.max_length, self.metadata.truncation_side)
        logits = np.empty(len(rows), dtype=np.float64)
        device = self.device
        with tqdm(total=len(rows), desc="scoring texts", unit="text", disable=not progress) as bar:
            for batch_idx in length_sorted_batches(lengths, self.batch_size):
                batch = self.tokenizer.pad([rows[i] for i in batch_idx], return_tensors="pt")
                batch = {key: value.to(device) for key, value in batch.items()}
                logits[batch_idx] = self.model(**batch).logits[:, 0].float().cpu().numpy()
                bar.update(len(batch_idx))
        return logits


def _check_texts(texts: Sequence[str], name: str = "texts") -> list[str]:
    if isinstance(texts, str):
        raise TypeError(f"{name} must be a list of strings, got one string; wrap it in a list.")
    texts = list(texts)
    for i, text in enumerate(texts):
        if not isinstance(text, str):
            raise TypeError(f"{name}[{i}] is {type(text).__name__}, not str; pass strings.")
    return texts


def check_device(device: str | torch.device | None) -> torch.device:
    """``device`` as a torch device (None: ``cuda`` when available, else ``cpu``); a bad or absent one is a ValueError."""
    if device is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(device)
    except (RuntimeError, TypeError) as err:
        raise ValueError(f"device={str(device)!r} is not a torch device; use cpu, cuda or cuda:N.") from err
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device={str(device)!r} but no CUDA GPU is visible here; use --device cpu.")
    return device
