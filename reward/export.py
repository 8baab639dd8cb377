"""Export a refine run's classifier as a standard Hugging Face reward model.

``export_reward_model(run, out)`` reads ``runs/<name>/refine/iter_<k>/classifier`` and writes a folder that plain
``AutoModelForSequenceClassification.from_pretrained(out)`` loads (no remote code, safetensors only, one logit):

- the output layer (``classifier`` for BERT-style models, ``score`` for decoders) is negated, so the logit is
  ``reward = -unsafe_logit`` (higher means safer) and equals silr's in-process score up to float rounding;
- ``config.json`` gets ``id2label {0: "safe"}``, ``problem_type "regression"`` (so the text-classification pipeline
  returns the raw reward, not a sigmoid) and the ``silr`` block (:class:`reward.config.RewardMetadata`): threshold in
  reward units, calibration over the training split of that iteration, max_length, truncation side, template, source;
- the tokenizer is saved with ``model_max_length = max_length`` and right truncation, as in training;
- ``README.md`` is a model card (:mod:`reward.model_card`).

The folder is written under a temporary name beside ``out`` and renamed when complete; leftovers of an export that
was killed (``.<out>.<hex>.tmp``) are removed first (:func:`refine.rundir.atomic_dir`).
"""

from __future__ import annotations

import logging
import os
import re
from pathlib import Path

import numpy as np

from refine.classifier_io import load_refined_classifier
from refine.rundir import atomic_dir, read_json, read_parquet, write_text
from refine.transformers_setup import quiet_transformers
from reward.config import METADATA_KEY, Calibration, RewardMetadata
from reward.model_card import render_model_card

logger = logging.getLogger(__name__)

# Head family (refine.heads) → name of the final linear layer in the full model.
OUTPUT_LAYERS = {"bert": "classifier", "score": "score"}
CALIBRATION_SPLIT = "train"


def refined_iterations(refine_dir: Path) -> list[int]:
    """Iterations k >= 1 with a complete folder (``metrics.json``) and a saved classifier, ascending."""
    found = []
    for folder in refine_dir.glob("iter_*"):
        match = re.fullmatch(r"iter_(\d+)", folder.name)
        if match and int(match.group(1)) >= 1 and (folder / "metrics.json").is_file() and (folder / "classifier").is_dir():
            found.append(int(match.group(1)))
    return sorted(found)


def resolve_iteration(run_dir: str | os.PathLike, iteration: str | int = "best") -> int:
    """The iteration to export: ``best`` (summary.json's best_iteration), ``last``, or a number k >= 1.

    Raises:
        FileNotFoundError: If ``run_dir`` has no ``refine/`` folder, or ``best`` is asked and summary.json is missing.
        ValueError: If the iteration is unknown or has no classifier.
    """
    refine_dir = Path(run_dir) / "refine"
    if not refine_dir.is_dir():
        raise FileNotFoundError(f"{refine_dir} not found; pass a run directory made by `python -m refine` (runs/<name>).")
    available = refined_iterations(refine_dir)
    listing = ", ".join(map(str, available)) or "none"
    if not available:
        raise ValueError(f"{refine_dir} holds no refined iteration with a classifier; run `python -m refine` first.")
    text = str(iteration).strip().lower()
    summary_path = refine_dir / "summary.json"
    if text == "last":
        if not summary_path.is_file():  # an unfinished run: its newest finished iteration
            return available[-1]
        # The finished run's own last iteration: a rerun with fewer loop.iterations leaves older, later iter_k.
        k = _summary_iteration(summary_path, "iterations_run")
        if k not in available:
            raise ValueError(f"iterations_run={k} in {summary_path} has no classifier (available: {listing}); "
                             "pass --iteration k.")
        return k
    if text == "best":
        if not summary_path.is_file():
            raise FileNotFoundError(f"{summary_path} not found; finish the refine run, or pass --iteration last or k.")
        k = _summary_iteration(summary_path, "best_iteration")
        if k not in available:
            raise ValueError(f"best_iteration={k} in {summary_path} has no classifier (available: {listing}); "
                             "pass --iteration last or k.")
        return k
    if not re.fullmatch(r"\d+", text):
        raise ValueError(f"iteration={iteration!r} must be best, last or a number (available: {listing}).")
    k = int(text)
    if k == 0:
        raise ValueError(f"iteration 0 holds the annotator's labels, not a classifier; choose one of {listing}.")
    if k not in available:
        raise ValueError(f"iteration {k} not found in {refine_dir} (available: {listing}).")
    return k


def _summary_iteration(summary_path: Path, key: str) -> int:
    summary = read_json(summary_path)
    value = summary.get(key) if isinstance(summary, dict) else None
    if not isinstance(value, int) or isinstance(value, bool):
        raise ValueError(f"{summary_path} has no integer {key} (found {value!r}); delete it and rerun refine (it is "
                         "rewritten from the finished iterations), or pass --iteration k.")
    return value


def training_calibration(iter_dir: Path) -> Calibration:
    """Reward statistics over the training-split rows of ``labels.parquet`` (reward = -score; no recompute)."""
    path = iter_dir / "labels.parquet"
    frame = read_parquet(path)
    for column in ("split", "score"):
        if column not in frame.columns:
            raise ValueError(f"{path} has no `{column}` column (found: {', '.join(frame.columns)}); rerun refine.")
    rewards = -frame.loc[frame["split"] == CALIBRATION_SPLIT, "score"].to_numpy(dtype=np.float64)
    if rewards.size == 0 or not np.isfinite(rewards).all():
        raise ValueError(f"{path} has no finite scores on the {CALIBRATION_SPLIT} split; rerun that refine iteration.")
    q05, q50, q95 = np.quantile(rewards, [0.05, 0.5, 0.95])
    return Calibration(
        mean=float(rewards.mean()), std=float(rewards.std()), n=int(rewards.size),
        source=f"{iter_dir.name}/labels.parquet, split={CALIBRATION_SPLIT}, reward = -score",
        quantiles={"q05": float(q05), "q50": float(q50), "q95": float(q95)},
    )


def _quiet_load(folder: Path, *, trust_remote_code: bool):
    """load_refined_classifier without transformers' "MISSING head weights" report: the trained head fills them."""
    with quiet_transformers():
        return load_refined_classifier(folder, trust_remote_code=trust_remote_code)


def negate_output_layer(model, family: str) -> None:
    """Negate the final linear layer's weight and bias in place, so the logit becomes -unsafe_logit."""
    import torch

    if family not in OUTPUT_LAYERS:
        raise ValueError(f"head family {family!r} is not supported by export (known: {', '.join(OUTPUT_LAYERS)}).")
    layer = getattr(model, OUTPUT_LAYERS[family])
    with torch.no_grad():
        layer.weight.neg_()
        if layer.bias is not None:
            layer.bias.neg_()


def check_output_folder(out: Path, overwrite: bool) -> None:
    """Raise ValueError unless ``out`` is absent, empty, or (with ``overwrite``) a silr reward model folder."""
    if not out.exists():
        return
    if not out.is_dir():
        raise ValueError(f"--out {out} is a file; choose a folder path.")
    if not any(out.iterdir()):
        return
    if not overwrite:
        raise ValueError(f"{out} exists and is not empty; pass --overwrite to replace it, or choose another --out.")
    config = out / "config.json"
    if not (config.is_file() and METADATA_KEY in read_json(config)):
        # Never delete a folder silr did not make, even when asked to overwrite.
        raise ValueError(f"{out} is not a silr reward model folder, so --overwrite will not replace it; choose another --out.")


def save_reward_folder(model, tokenizer, metadata: RewardMetadata, folder: Path, *, card: str) -> None:
    """Write a one-logit reward model (higher means safer) with its ``silr`` block, tokenizer and model card into
    ``folder``: safetensors only (anything else is an error), right padding and truncation at ``max_length``."""
    config = model.config
    config.id2label, config.label2id = {0: "safe"}, {"safe": 0}
    config.problem_type = "regression"
    config.pad_token_id = tokenizer.pad_token_id
    setattr(config, METADATA_KEY, metadata.to_dict())
    tokenizer.model_max_length = metadata.max_length
    tokenizer.truncation_side = "right"
    tokenizer.padding_side = "right"
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    pickles = [p.name for p in folder.iterdir() if p.suffix in (".bin", ".pt", ".pth")]
    safetensors = any((folder / name).is_file() for name in ("model.safetensors", "model.safetensors.index.json"))
    if pickles or not safetensors:
        raise ValueError(f"save_pretrained wrote {pickles or 'no safetensors'}; upgrade transformers and re-export.")
    write_text(folder / "README.md", card)


def export_reward_model(
    run_dir: str | os.PathLike, out_dir: str | os.PathLike, *, iteration: str | int = "best", overwrite: bool = False,
    trust_remote_code: bool = False,
) -> Path:
    """Write the reward model of one refine iteration to ``out_dir`` (see the module docstring).

    Args:
        run_dir: The run directory (``runs/<name>``) holding ``config.yaml`` and ``refine/``.
        out_dir: Folder to create. It must not exist or be empty, unless ``overwrite`` and it is a silr export.
        iteration: ``best`` (highest accuracy on L, from summary.json), ``last``, or a number k >= 1.
        overwrite: Replace an existing silr reward model folder.
        trust_remote_code: Allow running the Python code of a classifier trained with ``trust_remote_code`` (its
            ``classifier.json`` says so). Off, such a classifier is refused: the run folder alone never turns it on.

    Returns:
        The output folder.

    Raises:
        FileNotFoundError: If the run or its files are missing.
        ValueError: On an unknown iteration, an unsupported head, an output folder that may not be replaced, or a
            classifier that needs remote code without ``trust_remote_code``.
    """
    run = Path(run_dir)
    out = Path(out_dir)
    check_output_folder(out, overwrite)
    k = resolve_iteration(run, iteration)
    iter_dir = run / "refine" / f"iter_{k}"
    model, tokenizer, meta = _quiet_load(iter_dir / "classifier", trust_remote_code=trust_remote_code)
    calibration = training_calibration(iter_dir)

    negate_output_layer(model, meta.family)
    metadata = RewardMetadata(
        higher_is_safer=True, threshold=-float(meta.threshold), calibration=calibration, max_length=meta.max_length,
        truncation_side="right", template=meta.template,
        source={"run": str(run.resolve()), "iteration": k, "base_model": meta.model_name_or_path, "family": meta.family,
                "iteration_selection": str(iteration).strip().lower()},
    )
    with atomic_dir(out) as tmp:
        save_reward_folder(model, tokenizer, metadata, tmp, card=render_model_card(run, k, metadata))
    logger.info("exported iteration %d of %s to %s (reward = -unsafe_logit; mean %.3f, std %.3f over %d training texts)",
                k, run, out, calibration.mean, calibration.std, calibration.n)
    return out
