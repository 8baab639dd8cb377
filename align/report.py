"""The report stage: ``report/`` with report.html (self-contained), report.md, summary.json and PNGs.

Reads the evaluate stage (``samples.jsonl`` and ``summary.json`` per variant and seed), the reward evaluations
(``reward_eval/<name>/evaluation.json``), the training stage's metrics (PPO, GRPO or RLOO: TRL's logged keys), the
refine runs' diagnostics and the prompt split. Every
policy number is a mean over seeds of a per-seed mean over answers, with the standard deviation over seeds (ddof=1;
none with a single seed). Judge and reward numbers, and the reward distributions, are on the prompts that should be
refused; over-refusal is on the safe prompts (:func:`align.evaluate.summarize`).

Sections: summary (the per-policy table), reward models (each training reward and the judge on held-out data, with
one sentence reading the table), judge reward distributions, every reward on every policy, training curves of the
configured algorithm, refine diagnostics, sample answers.
"""

from __future__ import annotations

import base64
import html
import logging
from pathlib import Path
from string import Template

import numpy as np
import pandas as pd

from align.config import JUDGE, JUDGE_PAIRS, SFT, AlignConfig
from align.plots import plot_bars, plot_reward_distributions, plot_training_curves
from align.reward_eval import load_reward_evaluations
from align.reward_summary import headline, policy_refusal_aucs, reward_reading
from align.stages import (
    REWARD_EVAL_BOOTSTRAP,
    REWARD_PAIR_SETS,
    building,
    evaluate_fingerprint,
    is_done,
    needed_refine_variants,
    report_fingerprint,
    require_stage,
    reward_targets,
    run_dir,
    stage_name,
    training_stage,
)
from align.trainer_common import CURVES, TRAINER_NAMES
from refine.errors import damaged_folder, one_line
from refine.rundir import read_json, read_jsonl, write_json, write_text

logger = logging.getLogger(__name__)

TEMPLATE = Path(__file__).parent / "templates" / "report.html"
METRICS = [("judge_mean", "judge reward (higher = safer)", "{:.3f}"),
           ("unsafe_fraction", "judged unsafe (harmful prompts)", "{:.1%}"),
           ("refusal_fraction", "refusal rate (harmful prompts)", "{:.1%}"),
           ("over_refusal_fraction", "over-refusal (safe prompts)", "{:.1%}"),
           ("safe_judged_unsafe_fraction", "judged unsafe (safe prompts)", "{:.1%}"),
           ("own_reward_mean", "own training reward", "{:.3f}"), ("kl_mean", "KL to SFT (nats)", "{:.2f}"),
           ("length_mean", "answer length (tokens)", "{:.1f}")]
REFINE_COLUMNS = ["iteration", "pi", "theta1", "theta2", "flips", "labeled_accuracy", "test_accuracy", "test_f1"]


def mean_std(values: list[float]) -> tuple[float, float]:
    """Mean and sample std (ddof=1) over seeds; std is nan for fewer than two values."""
    array = np.array([v for v in values if v is not None], dtype=np.float64)
    if array.size == 0:
        return float("nan"), float("nan")
    return float(array.mean()), float(array.std(ddof=1)) if array.size > 1 else float("nan")


def aggregate(summaries: dict[str, list[dict]]) -> pd.DataFrame:
    """One row per variant: ``<metric>_mean`` and ``<metric>_std`` over its seeds' summaries, and ``seeds``."""
    rows = []
    for variant, per_seed in summaries.items():
        row = {"variant": variant, "seeds": len(per_seed)}
        for key, _, _ in METRICS:
            row[f"{key}_mean"], row[f"{key}_std"] = mean_std([s[key] for s in per_seed])
        for scorer in per_seed[0]["rewards_mean"]:
            row[f"reward:{scorer}_mean"], row[f"reward:{scorer}_std"] = mean_std(
                [s["rewards_mean"][scorer] for s in per_seed])
        rows.append(row)
    return pd.DataFrame(rows)


def fmt(mean: float, std: float, pattern: str) -> str:
    if mean is None or np.isnan(mean):
        return "–"
    text = pattern.format(mean)
    return text if np.isnan(std) else f"{text} ± {pattern.format(std)}"


def _image(path: Path) -> str:
    data = base64.b64encode(path.read_bytes()).decode("ascii")
    return f'<img src="data:image/png;base64,{data}" alt="{html.escape(path.stem)}">'


def _html_table(header: list[str], rows: list[list[str]], css: str = "") -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(
        f'<td class="num">{html.escape(c)}</td>' if _numeric(c) else f"<td>{html.escape(c)}</td>" for c in row
    ) + "</tr>" for row in rows)
    return f'<table class="{css}"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'


def _md_table(header: list[str], rows: list[list[str]]) -> str:
    def cell(text: str) -> str:
        return text.replace("|", "\\|").replace("\n", " ")

    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(cell(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def _numeric(text: str) -> bool:
    return bool(text) and (text[0].isdigit() or text[0] in "-–+") and any(ch.isdigit() for ch in text)


def _truncate(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


class Section:
    """A report section rendered to both HTML and markdown."""

    def __init__(self, anchor: str, title: str):
        self.anchor, self.title = anchor, title
        self.html: list[str] = []
        self.md: list[str] = []

    def text(self, text: str, note: bool = False) -> None:
        self.html.append(f'<p class="note">{html.escape(text)}</p>' if note else f"<p>{html.escape(text)}</p>")
        self.md.append(f"> {text}" if note else text)

    def table(self, header: list[str], rows: list[list[str]], css: str = "") -> None:
        self.html.append(_html_table(header, rows, css))
        self.md.append(_md_table(header, rows))

    def image(self, path: Path) -> None:
        self.html.append(_image(path))
        self.md.append(f"![{path.stem}]({path.name})")

    def render_html(self) -> str:
        heading = f'<section id="{self.anchor}"><h2>{html.escape(self.title)}</h2>\n'
        return heading + "\n".join(self.html) + "</section>"

    def render_md(self) -> str:
        return f"## {self.title}\n\n" + "\n\n".join(self.md)


def _read_stage_csv(path: Path, *, fix: str) -> pd.DataFrame:
    """A CSV that a finished stage wrote; an empty or garbled one is a one-line error naming it and ``fix``."""
    try:
        return pd.read_csv(path)
    except ValueError as err:  # pandas' EmptyDataError and ParserError, and UnicodeDecodeError, are ValueErrors
        raise ValueError(f"{path} is damaged ({one_line(err, 200)}); {fix}") from err


def _load_evaluations(config: AlignConfig, config_path: str | None) -> dict[str, list[tuple[int, dict, list[dict]]]]:
    run = run_dir(config)
    loaded = {}
    for variant in config.variants:
        loaded[variant] = []
        for seed in config.ppo.seeds:
            name = stage_name("evaluate", variant, seed)
            folder = require_stage(run, name, evaluate_fingerprint(config, variant, seed), config_path=config_path)
            try:
                summary = read_json(folder / "summary.json")
                missing = [key for key, *_ in METRICS if key not in summary]
                if missing:
                    raise ValueError(f"summary.json lacks {', '.join(missing)}")
                if not (folder / "samples.jsonl").is_file():
                    raise FileNotFoundError("samples.jsonl is missing")
            except (ValueError, OSError, TypeError) as err:  # stage.json marks it finished
                raise damaged_folder(folder, err, rerun="rerun `align evaluate`") from err
            loaded[variant].append((seed, summary, read_jsonl(folder / "samples.jsonl")))  # names its own damage
    return loaded


def _refine_section(config: AlignConfig, out: Path) -> Section:
    section = Section("refine", "Refine diagnostics (the classifiers behind the rewards)")
    section.text("Iteration 0 is the annotator's labels. Accuracy on L uses the gold-labelled set that estimates the "
                 "priors; test accuracy uses a gold split no step saw.")
    found = False
    for variant in needed_refine_variants(config):
        folder = Path(config.output_dir) / "refine" / variant / "refine"
        if not (folder / "metrics.csv").is_file():
            continue
        found = True
        table = _read_stage_csv(folder / "metrics.csv", fix="delete it and rerun `python -m refine --config "
                                f"{folder.parent / 'config.yaml'}` (it is rewritten from the finished iterations).")
        columns = [c for c in REFINE_COLUMNS if c in table.columns]
        rows = [[f"{v:.3f}" if isinstance(v, float) else str(v) for v in record] for record in
                table[columns].itertuples(index=False)]
        section.html.append(f"<h3>{html.escape(variant)}</h3>")
        section.md.append(f"### {variant}")
        section.table(columns, rows)
        for name in ("accuracy.png", "priors.png"):
            if (folder / name).is_file():
                copy = out / f"refine_{variant}_{name}"
                copy.write_bytes((folder / name).read_bytes())
                section.image(copy)
    if not found:
        section.text("No refine run in this run directory (the rewards came from ppo.reward_models).")
    return section


def _number(value, pattern: str = "{:.3f}") -> str:
    return "–" if value is None else pattern.format(value)


def _reward_section(config: AlignConfig, evaluations: dict[str, dict], sft_rows: list[dict]) -> tuple[Section, dict]:
    """The reward-model table (one row per training reward, then the judge) and the numbers behind it; ``sft_rows``:
    the SFT policy's answers (every seed; none when sft is not a variant)."""
    pairs = config.evaluate.reward_pairs
    pairs_label = "HH-RLHF harmless pairs" if pairs in REWARD_PAIR_SETS else "preference pairs"
    level = f"{REWARD_EVAL_BOOTSTRAP['confidence']:.0%}"
    section = Section("reward-models", "Reward models on held-out data")
    section.text("Each training reward and the judge, before RL training, on data none of them trained on: the gold test split "
                 "of its refine run (exports of this run) and preference pairs "
                 f"({pairs or 'none: evaluate.reward_pairs is null'}). On an XSTest-style test split, 'unsafe "
                 "prompts' is P(reward(refusal) > reward(compliance)) (higher = better) and 'safe prompts' is "
                 "P(reward(refusal) > reward(helpful answer)) (over-refusal: lower = better, 0.5 = no preference). "
                 "ROC-AUC ranks unsafe answers (or texts) below safe ones; accuracy is at the exported threshold (the "
                 "judge's: the one this evaluation uses). Pairwise accuracy is the share of pairs whose chosen (more "
                 f"harmless) answer gets the higher reward, with its {level} bootstrap interval. The last column is "
                 "on the answers of the policy being aligned: how each model ranks the SFT policy's refusals (keyword "
                 "detector) above its other answers to the held-out harmful prompts, every seed pooled; a reward "
                 "below 0.5 there pushes the policy away from refusing, whatever it scores on its test split.")
    on_policy = policy_refusal_aucs(sft_rows, JUDGE)
    numbers, rows = {}, []
    for target in reward_targets(config):
        results = evaluations[target.name]
        policy = on_policy.get(target.name, {})
        numbers[target.name] = {"path": str(target.path), "refine_variant": target.refine_variant,
                                **headline(results), "policy_refusal_auc": policy.get("auc"),
                                "policy_refusals": policy.get("refusals"), "policy_answers": policy.get("n")}
        h = numbers[target.name]
        label = "judge (never used in training)" if target.name == JUDGE else f"{target.name} (training reward)"
        origin = f"refine/{target.refine_variant}" if target.refine_variant else str(target.path)
        interval = (f"{h['pairs_accuracy']:.3f} [{h['pairs_ci'][0]:.3f}, {h['pairs_ci'][1]:.3f}]"
                    if h["pairs_ci"] is not None else "–")
        rows.append([label, origin, _number(h["unsafe_prompt_auc"]), _number(h["safe_prompt_auc"]),
                     _number(h["answer_roc_auc"]), _number(h["accuracy"]), interval, _number(h["pairs_n"], "{}"),
                     "–" if not policy else f"{_number(policy['auc'])} ({policy['refusals']} of {policy['n']})"])
    section.table(["reward model", "from", "unsafe prompts: AUC refusal > compliance ↑",
                   "safe prompts: AUC refusal > helpful ↓", "test split: answer ROC-AUC ↑",
                   "test split: accuracy at threshold", f"{pairs_label}: accuracy [{level} interval]", "pairs n",
                   "SFT's answers: AUC refusal > other ↑ (refusals of answers)"], rows)
    reading = reward_reading(numbers)
    section.text(reading)
    return section, {"per_model": numbers, "reading": reading}


def _training_runs(config: AlignConfig) -> tuple[dict[str, pd.DataFrame], dict[str, dict]]:
    """Per trained variant and seed: its metrics (label → frame) and its train.json (label → record, where present)."""
    curves, runs = {}, {}
    rerun = "align ppo" if config.algorithm == "ppo" else "align train"
    for variant in config.trained_variants:
        for seed in config.ppo.seeds:
            folder = Path(config.output_dir) / training_stage(config, variant, seed)
            label = f"{variant} s{seed}"
            if (folder / "metrics.csv").is_file():
                curves[label] = _read_stage_csv(
                    folder / "metrics.csv", fix=f"delete the folder {folder} and rerun `{rerun}` (that run is "
                    "recomputed).")
            if (folder / "train.json").is_file():
                try:
                    runs[label] = read_json(folder / "train.json")
                except ValueError as err:
                    raise damaged_folder(folder, err, rerun=f"rerun `{rerun}`") from err
    return curves, runs


def _training_section(config: AlignConfig, out: Path, curves: dict, runs: dict[str, dict]) -> Section:
    """The algorithm, its curves (TRL's own metrics) and one row per run: updates, time, last logged values."""
    algorithm = config.algorithm
    section = Section("training", f"Training: {algorithm.upper()} ({TRAINER_NAMES[algorithm]})")
    if not config.trained_variants:
        section.text(f"No {algorithm.upper()} run (sft only).")
        return section
    kl_note = ("objective/kl is the KL to the SFT policy summed over the response (TRL PPO)." if algorithm == "ppo"
               else "kl is the KL to the SFT policy per completion token, as TRL logs it (logged only when beta > 0).")
    section.text(f"Trained with {algorithm.upper()} ({TRAINER_NAMES[algorithm]}, settings from the config's {algorithm} "
                 "section); every algorithm uses the same prompts, reward models, policy and seeds. Curves: TRL's "
                 f"logged metrics per update; {kl_note} The KL to SFT in the summary table is measured the same way "
                 "for every algorithm, on the held-out answers.")
    if curves:
        section.image(out / "training_curves.png")
    keys = [key for key, _ in CURVES[algorithm]]
    rows = [[label, str(record.get("updates", "–")), str(record.get("episodes", "–")),
             _number(record.get("seconds_per_update"), "{:.2f}")]
            + [_number(record.get("final", {}).get(key)) for key in keys] for label, record in runs.items()]
    if rows:
        section.table(["run", "updates", "completions", "seconds per update"] + [f"last {key}" for key in keys], rows)
    return section


def _sample_rows(rows: list[dict], k: int) -> list[dict]:
    """The first answers to prompts that should be refused, and up to half of ``k`` to safe prompts."""
    harmful = [r for r in rows if r["should_refuse"]]
    safe = [r for r in rows if not r["should_refuse"]]
    n_safe = min(len(safe), k // 2)
    return harmful[: k - n_safe] + safe[:n_safe]


def build_report(config: AlignConfig, out: Path, loaded: dict, reward_evaluations: dict[str, dict]) -> dict:
    """Write the figures, report.md, report.html and summary.json into ``out``; returns the summary.

    Args:
        config: The align config.
        out: The report folder (exists).
        loaded: Variant → ``[(seed, summary, samples)]`` of the evaluate stage.
        reward_evaluations: Reward name (variant or judge) → the ``evaluation.json`` of its reward_eval stage.
    """
    summaries = {v: [s for _, s, _ in runs] for v, runs in loaded.items()}
    table = aggregate(summaries)
    threshold = next(iter(summaries.values()))[0]["judge_threshold"]
    _plot_policies(config, out, loaded, table, threshold)
    curves, train_records = _training_runs(config)
    if curves:
        algorithm = config.algorithm.upper()
        plot_training_curves(out / "training_curves.png", curves, CURVES[config.algorithm],
                             title=f"{algorithm}: TRL's training metrics per update", xlabel=f"{algorithm} update")
    split_path = Path(config.output_dir) / "prompts" / "split.json"
    split = read_json(split_path) if split_path.is_file() else None
    overview = _overview_section(config, table, loaded, threshold, split)
    sft_rows = [row for _, _, samples in loaded.get(SFT, []) for row in samples]
    reward_section, reward_summary = _reward_section(config, reward_evaluations, sft_rows)
    sections = [overview, reward_section, _figure_section(out), _cross_section(config, table),
                _training_section(config, out, curves, train_records), _refine_section(config, out),
                _samples_section(config, loaded)]
    n_answers, n_harmful = _answer_counts(loaded)
    summary = {"algorithm": config.algorithm, "trainer": TRAINER_NAMES[config.algorithm], "training_runs": train_records,
               "variants": config.variants, "seeds": config.ppo.seeds, "judge": config.evaluate.judge,
               "judge_threshold": threshold, "num_eval_prompts": n_answers, "num_should_refuse": n_harmful,
               "num_safe": n_answers - n_harmful, "reward_models": reward_summary["per_model"],
               "reward_reading": reward_summary["reading"],
               "per_variant": {row["variant"]: {k: v for k, v in row.items() if k != "variant"}
                               for row in table.to_dict(orient="records")},
               "per_seed": summaries}
    if split is not None:
        summary["prompts"] = split
    _write_pages(config, out, sections)
    write_json(out / "summary.json", summary)
    return summary


def _answer_counts(loaded: dict) -> tuple[int, int]:
    """Answers per policy and seed, and how many of them answer prompts that should be refused."""
    first_rows = next(iter(loaded.values()))[0][2]
    return len(first_rows), sum(bool(r["should_refuse"]) for r in first_rows)


def _plot_policies(config: AlignConfig, out: Path, loaded: dict, table: pd.DataFrame, threshold: float) -> None:
    """The judge's reward distribution per policy, and the bar chart of the safety, KL and length means."""
    judge_rewards = {v: np.array([r["judge"] for _, _, rows in runs for r in rows if r["should_refuse"]])
                     for v, runs in loaded.items()}
    means = {row.variant: (row.judge_mean_mean, row.judge_mean_std) for row in table.itertuples()}
    plot_reward_distributions(out / "judge_reward_distribution.png", judge_rewards, means, threshold=threshold,
                              bins=config.report.bins, xlabel="judge reward (higher = safer)",
                              title="Independent judge's reward of answers to held-out harmful prompts",
                              order=config.variants)
    plot_bars(out / "safety_kl_length.png", table, [("unsafe_fraction", "judged unsafe (harmful prompts)"),
                                                     ("refusal_fraction", "refusal rate (harmful prompts)"),
                                                     ("over_refusal_fraction", "over-refusal (safe prompts)"),
                                                     ("kl_mean", "KL to SFT (nats)"),
                                                     ("length_mean", "answer length (tokens)")],
              "Mean over seeds (error bars: std over seeds)")


def _overview_section(config: AlignConfig, table: pd.DataFrame, loaded: dict, threshold: float,
                      split: dict | None) -> Section:
    n_seeds = len(config.ppo.seeds)
    n_answers, n_harmful = _answer_counts(loaded)
    overview = Section("summary", "Summary")
    safe_sources = ", ".join(config.prompts.safe_eval_sources)
    trained = (f"; RL algorithm {config.algorithm.upper()} ({TRAINER_NAMES[config.algorithm]})"
               if config.trained_variants else "")
    overview.text(f"{len(config.variants)} policies ({', '.join(config.variants)}{trained}) x {n_seeds} seed(s), each "
                  f"answering {n_harmful} held-out harmful prompts it should refuse "
                  f"({', '.join(config.prompts.eval_sources)}) and {n_answers - n_harmful} safe prompts it should "
                  f"answer ({safe_sources or 'none'}). Judge: {_judge_label(config)} (never used in training); an "
                  f"answer is judged unsafe when its judge reward is below {threshold:.3f}. Refusal rates come from a "
                  "keyword refusal detector (align/refusal.py; 88% agreement with XSTest's human labels); "
                  "over-refusal is its refusal rate on the safe prompts.")
    dropped = (split or {}).get("held_out_from_rewards", {}).get("dropped", 0)
    if dropped:
        overview.text(f"Held out from the rewards: {dropped} evaluation prompts were dropped before sampling because "
                      "the training data (refine corpus or preference pairs) of "
                      f"{', '.join(split['held_out_from_rewards']['refine_variants'])} held them.")
    if n_seeds < 2:
        overview.text("Single seed: no spread over seeds is available, so differences between variants are not "
                      "tested and may be noise.", note=True)
    header = ["variant", "seeds"] + [label for _, label, _ in METRICS]
    rows = [[row["variant"], str(row["seeds"])] + [fmt(row[f"{k}_mean"], row[f"{k}_std"], p) for k, _, p in METRICS]
            for row in table.to_dict(orient="records")]
    overview.table(header, rows)
    return overview


def _judge_label(config: AlignConfig) -> str:
    if config.evaluate.judge == JUDGE_PAIRS:
        return f"a reward model trained on the preference pairs {config.evaluate.judge_pairs.pairs} (judge: pairs)"
    return config.evaluate.judge


def _figure_section(out: Path) -> Section:
    figure = Section("judge-distribution", "Judge reward distributions (cf. the paper's Figure 4)")
    figure.image(out / "judge_reward_distribution.png")
    figure.image(out / "safety_kl_length.png")
    return figure


def _cross_section(config: AlignConfig, table: pd.DataFrame) -> Section:
    scorers = [v for v in config.trained_variants if f"reward:{v}_mean" in table.columns]  # config order
    cross = Section("rewards", "Every training reward on every policy's answers")
    cross.text("Rows: policies; columns: the reward model each variant was trained with; means over the answers to "
               "harmful prompts. A policy that scores high on its own reward but not on the judge has learned the "
               "reward's blind spots.")
    cross.table(["variant"] + [f"reward of {s}" for s in scorers] + ["judge"],
                [[row["variant"]] + [fmt(row[f"reward:{s}_mean"], row[f"reward:{s}_std"], "{:.3f}") for s in scorers]
                 + [fmt(row["judge_mean_mean"], row["judge_mean_std"], "{:.3f}")] for row in table.to_dict("records")])
    return cross


def _samples_section(config: AlignConfig, loaded: dict) -> Section:
    settings = config.report
    samples = Section("samples", "Sample answers")
    sample_rows = []
    for variant, runs in loaded.items():
        _, _, rows = runs[0]
        for row in _sample_rows(rows, settings.samples_per_variant):
            verdict = "unsafe" if row["judge_unsafe"] else "safe"
            sample_rows.append([variant, row["source"], "refusal" if row["should_refuse"] else "answer",
                                _truncate(row["prompt"], settings.max_chars),
                                _truncate(row["response"], settings.max_chars), "yes" if row["refusal"] else "no",
                                f"{row['judge']:.3f}", verdict])
    samples.text(f"{settings.samples_per_variant} answers per variant (the first harmful prompts, and up to half from "
                 f"the first safe prompts), seed {config.ppo.seeds[0]}; texts cut to {settings.max_chars} characters. "
                 "Content warning: harmful requests.")
    samples.table(["variant", "source", "expected", "prompt", "answer", "refused", "judge", "verdict"], sample_rows,
                  css="samples")
    return samples


def _write_pages(config: AlignConfig, out: Path, sections: list[Section]) -> None:
    """report.html (from the template) and report.md."""
    settings, n_seeds = config.report, len(config.ppo.seeds)
    meta = (f"run {config.output_dir}; algorithm {config.algorithm} ({TRAINER_NAMES[config.algorithm]}); {n_seeds} "
            "seed(s); generated by python -m align report")
    body = "\n".join(s.render_html() for s in sections)
    page = Template(TEMPLATE.read_text("utf-8")).substitute(title=html.escape(settings.title), meta=html.escape(meta),
                                                          body=body)
    write_text(out / "report.html", page)
    write_text(out / "report.md", f"# {settings.title}\n\n{meta}\n\n" + "\n\n".join(s.render_md() for s in sections)
               + "\n")


def run_report(config: AlignConfig, *, config_path: str | None = None) -> Path:
    """Write the report unless it is done with this config; returns the report folder."""
    run = run_dir(config)
    stage_config = report_fingerprint(config)
    if is_done(run, "report", stage_config, overwrite=config.overwrite_output_dir):
        logger.info("report: done already (same config), skipped")
        return run.stage("report")
    loaded = _load_evaluations(config, config_path)
    reward_evaluations = load_reward_evaluations(config, config_path=config_path)
    with building(run, "report", stage_config) as tmp:
        build_report(config, tmp, loaded, reward_evaluations)
    return run.stage("report")


__all__ = ["aggregate", "build_report", "mean_std", "run_report", "SFT"]
