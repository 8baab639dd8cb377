"""The model card (``README.md``) of an exported reward model, written from the files of its refine run.

Reads ``config.yaml`` (how the run was configured), ``refine/metrics.csv`` (one row per iteration),
``refine/baselines.json``, ``refine/summary.json`` and the chosen ``iter_<k>/metrics.json``. A file or key the run
does not have shows as "not recorded"; the card never fails an export.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pandas as pd
import yaml

from refine.report import BASELINE_NAMES, TABLE_COLUMNS
from refine.rundir import read_json
from reward.config import RewardMetadata

NOT_RECORDED = "not recorded"


def _load(path: Path, reader) -> Any:
    try:
        return reader(path) if path.is_file() else None
    except (OSError, ValueError, yaml.YAMLError):
        return None


def _lookup(data: dict | None, dotted: str) -> Any:
    """``data["a"]["b"]`` for ``a.b``, or NOT_RECORDED when the run's config lacks it."""
    value: Any = data
    for part in dotted.split("."):
        if not isinstance(value, dict) or part not in value:
            return NOT_RECORDED
        value = value[part]
    return "null (the default)" if value is None else value


def _number(value: Any, fmt: str = "{:.3f}") -> str:
    if isinstance(value, (int, float)) and not (isinstance(value, float) and math.isnan(value)):
        return fmt.format(value)
    return "-"


def _metrics_table(table: pd.DataFrame | None) -> str:
    if table is None or table.empty:
        return f"Per-iteration metrics: {NOT_RECORDED}."
    columns = [(key, title, fmt) for key, title, fmt in TABLE_COLUMNS if key in table.columns]
    lines = ["| " + " | ".join(title for _, title, _ in columns) + " |", "|" + "---|" * len(columns)]
    for _, row in table.iterrows():
        cells = []
        for key, _, fmt in columns:
            value = row[key]
            cells.append(_number(int(value) if fmt == "{:d}" and pd.notna(value) else value, fmt))
        lines.append("| " + " | ".join(cells) + " |")
    lines.append("")
    lines.append("Iteration 0 is the annotator's own labels. `L acc` is accuracy on the ~50 gold labels used for the "
                 "priors; `test` columns use a gold test split that no step saw.")
    return "\n".join(lines)


def _baselines_table(baselines: dict | None) -> str:
    if not baselines:
        return f"Baselines: {NOT_RECORDED} (the run had no gold test split)."
    lines = ["| baseline | test accuracy | test F1 | n |", "|---|---|---|---|"]
    for name, metrics in baselines.items():
        lines.append(f"| {BASELINE_NAMES.get(name, name)} | {_number(metrics.get('accuracy'))} | "
                     f"{_number(metrics.get('f1'))} | {_number(metrics.get('n'), '{:d}')} |")
    return "\n".join(lines)


def _priors_line(row: dict | None) -> str:
    if not row:
        return NOT_RECORDED
    return ", ".join(f"{name} = {_number(row.get(name))}" for name in ("pi", "theta1", "theta2"))


def render_model_card(run_dir: str | Path, iteration: int, metadata: RewardMetadata) -> str:
    """Markdown model card of the reward model exported from ``iteration`` of the run in ``run_dir``."""
    run = Path(run_dir)
    refine_dir = run / "refine"
    config = _load(run / "config.yaml", lambda p: yaml.safe_load(p.read_text()))
    table = _load(refine_dir / "metrics.csv", pd.read_csv)
    baselines = _load(refine_dir / "baselines.json", read_json)
    summary = _load(refine_dir / "summary.json", read_json) or {}
    row = _load(refine_dir / f"iter_{iteration}" / "metrics.json", read_json) or {}
    calibration = metadata.calibration
    source = metadata.source
    selection = source.get("iteration_selection", "?")
    why = " (highest accuracy on the gold set L)" if selection == "best" else ""

    sections = [
        "---\nlibrary_name: transformers\npipeline_tag: text-classification\n"
        "tags: [silr, reward-model, safety, weak-supervision, uu-learning]\n---",
        "# Safety reward model (silr)",
        "A one-logit sequence classifier whose logit **is a safety reward: higher means safer**. It is the refined "
        f"safety classifier of run `{run.name}`, iteration {iteration}{why}, with its output layer negated: "
        "`reward = -unsafe_logit`.",
        "## How to use\n"
        "```python\nfrom transformers import AutoModelForSequenceClassification, AutoTokenizer\n\n"
        "model = AutoModelForSequenceClassification.from_pretrained(path)\n"
        "tokenizer = AutoTokenizer.from_pretrained(path)\n"
        f"text = {metadata.template!r}.format(prompt=prompt, response=response)\n"
        "reward = model(**tokenizer(text, truncation=True, return_tensors=\"pt\")).logits[0, 0].item()\n```\n\n"
        "Or with silr: `RewardModel.from_pretrained(path).score_pairs(prompts, responses)`, "
        "`python -m reward score|serve`.\n\n"
        f"- **Text template** (the one used in training): `{metadata.template!r}`.\n"
        f"- **Truncation**: at most {metadata.max_length} tokens; longer texts are cut on the "
        f"{metadata.truncation_side} (the beginning is kept), as in training.\n"
        f"- **Decision threshold**: a text is judged unsafe iff `reward < {_number(metadata.threshold, '{:.4f}')}`.\n"
        + (f"- **Calibration** (z-normalisation, optional): mean {calibration.mean:.4f}, std {calibration.std:.4f} over "
           f"{calibration.n} training texts ({calibration.source}).\n" if calibration else "")
        + "- The text-classification pipeline returns the raw reward as `score` (`problem_type` is regression).",
        "## How it was trained\n"
        "Self-iterative label refinement with robust unlabeled-unlabeled (UU) learning (Asano, Kozuno & Baba, "
        "NeurIPS 2025): an LLM annotator gives noisy safe/unsafe labels; a few gold labels estimate the class priors; "
        "a classifier is trained on the two pseudo-labelled sets with the robust UU risk; the corpus is relabelled and "
        "the loop repeats.\n\n"
        f"- Base model: `{source.get('base_model', NOT_RECORDED)}` (head family `{source.get('family', '?')}`), "
        f"backbone `{_lookup(config, 'classifier.backbone')}`; max_length {metadata.max_length}.\n"
        f"- Corpus: `{_lookup(config, 'data.path')}`; gold labels used for priors (L): "
        f"{_lookup(config, 'data.num_labeled')}.\n"
        f"- Annotator: {_lookup(config, 'annotator.kind')} (model: `{_lookup(config, 'annotator.model_name_or_path')}`).\n"
        f"- Priors: method `{_lookup(config, 'priors.method')}`; used to train this iteration: "
        f"{_priors_line(row.get('trained_with'))}; re-estimated after relabelling: {_priors_line(row)}.\n"
        f"- Loss: `{_lookup(config, 'train.loss')}` (gamma {_lookup(config, 'train.gamma')}, labeled_weight "
        f"{_lookup(config, 'train.labeled_weight')}), {_lookup(config, 'train.num_train_epochs')} epochs per iteration, "
        f"learning rate {_lookup(config, 'train.learning_rate')}.\n"
        f"- Iterations: {summary.get('iterations_run', NOT_RECORDED)} run "
        f"(configured: {_lookup(config, 'loop.iterations')}); exported: {iteration} (selection `{selection}`).",
        "## Metrics per iteration\n" + _metrics_table(table),
        "## Baselines (same frozen features, gold test split)\n" + _baselines_table(baselines),
        "## Intended use and limits\n"
        "- Intended use: a reward signal for safety alignment (PPO, GRPO, RLOO) and for comparing policies' "
        "responses in research. Use it with a KL penalty and watch for reward hacking.\n"
        "- It was trained on **weak labels** from an automatic annotator and ~50 gold labels; its errors follow the "
        "annotator's blind spots and the corpus it saw. Check the metrics above before trusting it.\n"
        "- It is **not a general content-moderation system**: it covers the notion of \"unsafe\" in its corpus only, "
        "in the corpus's language(s), and gives no category, severity or explanation.\n"
        "- Rewards are comparable only within this model; z-normalise with the calibration above to combine them "
        "with other rewards. Texts beyond max_length are judged on their beginning only.",
    ]
    return "\n\n".join(sections) + "\n"
