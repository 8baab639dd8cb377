"""Quality benchmark of `refine`: gold-test accuracy per iteration of robust UU and its baselines.

For each data set × annotator × seed it runs the refine loop with several objectives through the same code path
(robust_uu, robust_uu with the labelled set in the objective, uu, pn), and reports them next to the annotator itself,
cleanlab's CleanLearning, classifiers trained on the ~50 gold labels alone, the majority class and the gold ceiling.
Everything is measured on the gold test split that no step saw. Prints tables and writes JSON.

    python benchmarks/refine_quality.py                       # everything (7 min on 2 cores with cached annotator scores, + ~15 min of SmolLM2 labelling uncached)
    python benchmarks/refine_quality.py --datasets openai_moderation --annotators embedding --seeds 0
"""

from __future__ import annotations

import argparse
import logging
import math
import platform
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from refine.baselines import cleanlab_baseline  # noqa: E402
from refine.config import RefineConfig  # noqa: E402
from refine.config_loading import load_config  # noqa: E402
from refine.loop import NoSignalError, prepare_corpus, run_refine  # noqa: E402
from refine.priors import oracle_priors  # noqa: E402
from refine.rundir import RunDir, read_json, write_json  # noqa: E402

DATASETS = {
    "openai_moderation": "configs/refine/openai_moderation.yaml",
    "davidson": "configs/refine/davidson.yaml",
    "hatecheck": "configs/refine/hatecheck.yaml",
}
METHODS = {
    "robust_uu": [],
    "robust_uu+L": ["--train.labeled_weight", "10"],
    "uu": ["--train.loss", "uu"],
    "pn": ["--train.loss", "pn"],
    # pn with the decision threshold set so the unsafe share matches pi (from L): with the sigmoid loss the UU risk is
    # a class-weighted pn risk, so a flexible model ranks texts alike under both and mostly the threshold differs.
    "pn+pi": ["--train.loss", "pn", "--train.threshold", "prior_match"],
}
BASELINES = ["cleanlab", "labeled_logreg", "labeled_head", "majority", "gold_head"]


def annotator_args(name: str, seed: int, hf_max_examples: int) -> list[str]:
    if name == "embedding":
        return []  # the dataset configs use the embedding labeller with the labelled-prior threshold
    if name == "simulated":  # 30% of unsafe flipped to safe, 10% of safe to unsafe
        return ["--annotator.kind", "simulated", "--annotator.flip_unsafe", "0.3", "--annotator.flip_safe", "0.1",
                "--annotator.noise_seed", str(seed)]
    if name == "hf":  # SmolLM2-135M-Instruct asked Yes/No; ~2 texts/s on 2 cores, so a fixed sample
        return ["--annotator.kind", "hf", "--data.max_examples", str(hf_max_examples)]
    raise ValueError(f"unknown annotator {name}")


def accuracies(table: pd.DataFrame, iterations: int) -> list[float]:
    """Test accuracy at iterations 0..T; a run that stopped early carries its last value forward."""
    values = table["test_accuracy"].tolist()
    return values + [values[-1]] * (iterations + 1 - len(values))


def run_cell(dataset: str, annotator: str, seed: int, args) -> dict:
    """All methods and baselines for one data set × annotator × seed."""
    work = Path(args.work_dir)
    common = ["--data.seed", str(seed), "--train.seed", str(seed), "--loop.iterations", str(args.iterations),
              "--cache_dir", str(work / "cache" / dataset), *annotator_args(annotator, seed, args.hf_max_examples)]
    cell: dict = {"dataset": dataset, "annotator": annotator, "seed": seed, "methods": {}}
    for method, extra in METHODS.items():
        overrides = [*common, *extra, "--output_dir", str(work / dataset / annotator / f"seed{seed}" / method)]
        config = load_config(RefineConfig, ROOT / DATASETS[dataset], overrides)
        began = time.perf_counter()
        try:
            table = run_refine(config)
        except NoSignalError as err:
            cell["no_signal"] = str(err)
            first = err.annotator_metrics or {}
            cell.update({"annotator_accuracy": first.get("test_accuracy"), "annotator_roc_auc": first.get("test_roc_auc"),
                         "theta1": first.get("theta1"), "theta2": first.get("theta2"), "signal": "none"})
            logging.warning("%s/%s/seed %d: %s", dataset, annotator, seed, err)
            return cell
        record = {"test_accuracy": accuracies(table, args.iterations), "seconds": time.perf_counter() - began,
                  "stopped": table["signal"].iloc[-1] if table["signal"].iloc[-1] in ("collapsed", "none") else None,
                  "iterations_run": int(table["iteration"].iloc[-1])}
        summary = read_json(Path(config.output_dir) / "refine" / "summary.json")
        best = summary["best_iteration"]
        record["selected_by_L"] = record["test_accuracy"][best] if best else None
        cell["methods"][method] = record
        if method == "robust_uu":
            first = table.iloc[0]
            cell.update({"annotator_accuracy": first["test_accuracy"], "annotator_roc_auc": first.get("test_roc_auc"),
                         "theta1": first["theta1"], "theta2": first["theta2"], "signal": first["signal"]})
            cell["baselines"] = {k: v["accuracy"] for k, v in summary["baselines"].items()}
            corpus, _, _ = prepare_corpus(config, RunDir(config.output_dir))
            pseudo = pd.read_parquet(Path(config.output_dir) / "annotate" / "labels.parquet")["pseudo_label"].to_numpy()
            oracle = oracle_priors(corpus.gold[corpus.train], pseudo[corpus.train])
            cell.update({"oracle_theta1": oracle.theta1, "oracle_theta2": oracle.theta2})
            cell["baselines"]["cleanlab"] = cleanlab_baseline(
                corpus.features.head_input.numpy(), pseudo, train=corpus.train, test=corpus.test, gold=corpus.gold,
                seed=seed)["accuracy"]
    return cell


def mean_std(values: list[float]) -> str:
    values = [v for v in values if v is not None and not (isinstance(v, float) and math.isnan(v))]
    if not values:
        return "-"
    return f"{np.mean(values):.3f}±{np.std(values):.3f}" if len(values) > 1 else f"{values[0]:.3f}"


def summarise(cells: list[dict], iterations: int) -> tuple[list[dict], str]:
    rows, lines = [], []
    groups: dict[tuple[str, str], list[dict]] = {}
    for cell in cells:
        groups.setdefault((cell["dataset"], cell["annotator"]), []).append(cell)
    header = ["dataset", "annotator", "ann. acc", "ann. AUC", "theta1/theta2 (oracle)", "rUU it1", "rUU final",
              "rUU sel(L)", "rUU+L final", "uu final", "pn it1", "pn+pi it1", "pn final", *BASELINES]
    lines.append(" | ".join(header))
    lines.append(" | ".join("---" for _ in header))
    for (dataset, annotator), group in groups.items():
        ok = [c for c in group if "no_signal" not in c]
        row = {"dataset": dataset, "annotator": annotator, "seeds": [c["seed"] for c in group],
               "no_signal_seeds": [c["seed"] for c in group if "no_signal" in c]}
        if not ok:
            row["annotator_accuracy"] = mean_std([c.get("annotator_accuracy") for c in group])
            row["annotator_roc_auc"] = mean_std([c.get("annotator_roc_auc") for c in group])
            theta = f"{np.mean([c['theta1'] for c in group]):.2f}/{np.mean([c['theta2'] for c in group]):.2f} (L)"
            lines.append(" | ".join([dataset, annotator, row["annotator_accuracy"], row["annotator_roc_auc"], theta,
                                     f"NO SIGNAL in {len(group)}/{len(group)} seeds: stopped, no gain reported"]
                                    + ["-"] * (len(header) - 6)))
            rows.append(row)
            continue

        def method(name, key="final", ok=ok):
            values = []
            for c in ok:
                record = c["methods"].get(name)
                if record:
                    values.append(record["test_accuracy"][-1] if key == "final" else
                                  record["test_accuracy"][1] if key == "it1" else record["selected_by_L"])
            return values

        row.update({
            "annotator_accuracy": mean_std([c["annotator_accuracy"] for c in ok]),
            "annotator_roc_auc": mean_std([c["annotator_roc_auc"] for c in ok]),
            "oracle_theta": f"{np.mean([c['oracle_theta1'] for c in ok]):.2f}/{np.mean([c['oracle_theta2'] for c in ok]):.2f}",
            "per_iteration": {name: np.mean([c["methods"][name]["test_accuracy"] for c in ok if name in c["methods"]],
                                            axis=0).round(4).tolist() for name in METHODS},
        })
        cells_text = [dataset, annotator, row["annotator_accuracy"], row["annotator_roc_auc"], row["oracle_theta"],
                      mean_std(method("robust_uu", "it1")), mean_std(method("robust_uu")),
                      mean_std(method("robust_uu", "sel")), mean_std(method("robust_uu+L")), mean_std(method("uu")),
                      mean_std(method("pn", "it1")), mean_std(method("pn+pi", "it1")), mean_std(method("pn"))]
        cells_text += [mean_std([c["baselines"].get(b) for c in ok]) for b in BASELINES]
        if row["no_signal_seeds"]:
            cells_text[1] += f" (no signal in seeds {row['no_signal_seeds']})"
        lines.append(" | ".join(cells_text))
        row["table"] = dict(zip(header, cells_text, strict=True))
        rows.append(row)
    return rows, "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datasets", nargs="+", default=list(DATASETS), choices=list(DATASETS))
    parser.add_argument("--annotators", nargs="+", default=["simulated", "embedding", "hf"],
                        choices=["simulated", "embedding", "hf"])
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--iterations", type=int, default=5)
    parser.add_argument("--hf-max-examples", type=int, default=600,
                        help="Fixed sample per data set for the SmolLM2 annotator (about 2 texts/s on 2 cores).")
    parser.add_argument("--work-dir", default=str(ROOT / "runs" / "bench_quality"))
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "refine_quality.json"))
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")

    began, cells = time.perf_counter(), []
    for dataset in args.datasets:
        for annotator in args.annotators:
            for seed in args.seeds:
                cell = run_cell(dataset, annotator, seed, args)
                cells.append(cell)
                done = {m: round(r["test_accuracy"][-1], 3) for m, r in cell["methods"].items()}
                print(f"[{time.perf_counter() - began:6.0f}s] {dataset}/{annotator}/seed {seed}: "
                      f"annotator {cell.get('annotator_accuracy', float('nan')):.3f} final {done}"
                      + (" NO SIGNAL" if "no_signal" in cell else ""), flush=True)
    rows, table = summarise(cells, args.iterations)
    print("\nGold-test accuracy, mean±std over seeds " + str(args.seeds) + f" (T={args.iterations}):\n")
    print(table)
    write_json(args.out, {
        "command": " ".join(sys.argv), "machine": f"{platform.processor() or platform.machine()}, "
        f"{__import__('os').cpu_count()} cpus", "seconds": time.perf_counter() - began, "iterations": args.iterations,
        "summary": rows, "cells": cells, "table_markdown": table,
    })
    print(f"\nwrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
