"""Do response-level reward models judge answers? XSTest answers, real LLM-judge labels, 50 gold labels, 3 seeds.

Every trained method runs refine with the shipped recipe (`configs/refine/xstest_gpt4_judge.yaml` or
`xstest_string_match.yaml`: MiniLM fine-tuned as a cross-encoder on prompt + answer), is exported as a reward model (`reward export`, iteration best), and is
judged by `reward evaluate` on what a safety reward is for:

- XSTest test prompts (split by prompt: no answer to them was trained on): on unsafe prompts, the ROC-AUC with which
  the reward ranks a refusal above a compliance (higher is better); on safe prompts, a refusal above a helpful answer
  (over-refusal: lower is better, 0.5 = no preference); and the ROC-AUC / accuracy of the answer label itself;
- HH-RLHF harmless test pairs: how often the reward prefers the human-chosen, less harmful last answer;
- optionally (`--heldout DIR`), the XSTest prompts that are not in ../shared/data (the same folder layout).

Methods: the two annotators themselves (the GPT-4 judge and the string matcher, as +1/-1 scores), `vanilla` (pn on
the annotator's raw labels), `ours_50` (robust UU, priors from 50 gold labels), `ours_oracle` (robust UU, oracle
priors), `ours_50+L` (robust UU plus 10 × the supervised risk on the same 50 labels), `labeled_only` (the same model
fine-tuned on the 50 gold labels alone) and `gold` (fine-tuned on every gold
training label: the ceiling). Runs are resumable: a finished run or evaluation is read back.

    python benchmarks/reward_quality.py [--annotator strmatch|gpt4] [--seeds 0 1 2] [--max-pairs N] [--heldout DIR]
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from refine.config import RefineConfig  # noqa: E402
from refine.config_loading import data_dir, load_config  # noqa: E402
from refine.loop import NoSignalError, run_refine  # noqa: E402
from refine.rundir import read_json, read_parquet, write_json  # noqa: E402
from refine.xstest import read_xstest  # noqa: E402

CONFIGS = {"gpt4": ROOT / "configs" / "refine" / "xstest_gpt4_judge.yaml",
           "strmatch": ROOT / "configs" / "refine" / "xstest_string_match.yaml"}
METHODS = {
    "vanilla": ["--train.loss", "pn"],
    "ours_50": [],
    "ours_oracle": ["--priors.method", "oracle"],
    "ours_50+L": ["--train.labeled_weight", "10"],  # robust UU + 10 x the supervised risk on the 50 labels
    "labeled_only": ["--train.loss", "labeled"],
    "gold": ["--train.loss", "gold"],
}
COLUMNS = [("unsafe_auc", "XSTest unsafe: refusal > compliance (↑)"), ("safe_auc", "XSTest safe: refusal > helpful (↓)"),
           ("answer_auc", "answer ROC-AUC"), ("accuracy", "accuracy at threshold"), ("hh_accuracy", "HH-RLHF pairs"),
           ("heldout_unsafe_auc", "held-out unsafe (↑)"), ("heldout_safe_auc", "held-out safe (↓)")]


def refine_run(folder: Path, seed: int, annotator: str, extra: list[str], cache: Path) -> Path | str:
    """Run (or read back) one refine run; returns its folder, or the reason it stopped."""
    overrides = ["--data.seed", str(seed), "--train.seed", str(seed), "--cache_dir", str(cache), "--output_dir",
                 str(folder), *extra]
    try:
        run_refine(load_config(RefineConfig, str(CONFIGS[annotator]), overrides))
    except NoSignalError as err:
        return f"stopped: {err}"
    return folder


def annotator_metrics(run: Path) -> dict:
    """The annotator's own labels as a reward (-score: +1 unsafe, -1 safe, 0 no class) on the run's test split."""
    from reward.evaluate import answer_metrics, refusal_metrics

    labels = read_parquet(run / "refine" / "iter_0" / "labels.parquet")
    test = labels[labels["split"] == "test"]
    answers = read_xstest(Path(data_dir()) / "xstest").loc[test["id"].to_numpy()]
    rewards = -test["score"].to_numpy(dtype=np.float64)
    refusal = refusal_metrics(rewards, prompt_unsafe=(answers["prompt_label"] == "unsafe").to_numpy(),
                              refusal=answers["gold_refusal"].to_numpy())
    unsafe = (answers["gold_answer"] == "unsafe").to_numpy()
    answer = answer_metrics(rewards, unsafe, threshold=0.0)
    return {"unsafe_auc": refusal["unsafe_prompts"]["refusal_auc"], "safe_auc": refusal["safe_prompts"]["refusal_auc"],
            "answer_auc": answer["roc_auc"], "accuracy": answer["accuracy"]}


def reward_metrics(run: Path, out: Path, *, max_pairs: int | None, heldout: str | None) -> dict:
    """Export the run's best iteration as a reward model and evaluate it (read back when done)."""
    from reward.evaluate import evaluate_reward_model
    from reward.evaluation_data import load_pairs, load_refine_run, load_xstest
    from reward.export import export_reward_model
    from reward.model import RewardModel

    result_path = out / "evaluation.json"
    if result_path.is_file():
        return read_json(result_path)["headline"]
    if not (out / "model" / "config.json").is_file():
        export_reward_model(run, out / "model", iteration="best", overwrite=True)
    model = RewardModel.from_pretrained(out / "model", batch_size=64)
    suites = [load_refine_run(run), load_pairs(Path(data_dir()) / "hh_rlhf_harmless_test" / "test.jsonl.gz",
                                               max_pairs=max_pairs)]
    if heldout:
        suites.append(load_xstest(heldout))
    results = evaluate_reward_model(model, suites, progress=True)
    by_kind = {(s["kind"], i): s["metrics"] for i, s in enumerate(results["suites"])}
    test, pairs = by_kind[("refusals", 0)], by_kind[("pairs", 1)]
    headline = {"unsafe_auc": test["unsafe_prompts"]["refusal_auc"], "safe_auc": test["safe_prompts"]["refusal_auc"],
                "answer_auc": test["answers"]["roc_auc"], "accuracy": test["answers"]["accuracy"],
                "hh_accuracy": pairs["accuracy"], "hh_interval": pairs["accuracy_ci"], "hh_n": pairs["n"]}
    if heldout:
        held = by_kind[("refusals", 2)]
        headline.update(heldout_unsafe_auc=held["unsafe_prompts"]["refusal_auc"],
                        heldout_safe_auc=held["safe_prompts"]["refusal_auc"])
    write_json(result_path, {"headline": headline, "results": results})
    return headline


def mean_std(values: list) -> str:
    values = [v for v in values if v is not None]
    return f"{np.mean(values):.3f}±{np.std(values):.3f}" if values else "–"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--annotator", default="strmatch", choices=list(CONFIGS))
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--methods", nargs="+", default=list(METHODS), choices=list(METHODS))
    parser.add_argument("--max-pairs", type=int, default=None, help="HH-RLHF pairs per evaluation (default: all 2,312)")
    parser.add_argument("--heldout", default=None, help="folder of XSTest prompts not in ../shared/data (same layout)")
    parser.add_argument("--extra", nargs=argparse.REMAINDER, default=[],
                        help="refine overrides for every trained method (after the recipe), e.g. --extra "
                        "--finetune.num_train_epochs 2")
    parser.add_argument("--work-dir", default=None, help="default: runs/bench_reward_<annotator>")
    parser.add_argument("--out", default=None, help="default: benchmarks/results/reward_quality_<annotator>.json")
    args = parser.parse_args()
    work = Path(args.work_dir or ROOT / "runs" / f"bench_reward_{args.annotator}")
    out = Path(args.out or ROOT / "benchmarks" / "results" / f"reward_quality_{args.annotator}.json")
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")

    began, runs = time.perf_counter(), {}
    for seed in args.seeds:
        for method in args.methods:
            start = time.perf_counter()
            folder = refine_run(work / method / str(seed), seed, args.annotator, [*METHODS[method], *args.extra],
                                work / "cache")
            if isinstance(folder, str):
                runs[f"{method}/seed{seed}"] = {"stopped": folder}
                print(f"[{time.perf_counter() - began:5.0f}s] {method} seed {seed}: {folder}", flush=True)
                continue
            if method == "vanilla":  # iteration 0 of any run is the annotator itself; take it once per seed
                runs[f"annotator/seed{seed}"] = annotator_metrics(folder)
            metrics = reward_metrics(folder, work / "rewards" / method / str(seed), max_pairs=args.max_pairs,
                                     heldout=args.heldout)
            metrics["seconds"] = round(time.perf_counter() - start, 1)
            runs[f"{method}/seed{seed}"] = metrics
            print(f"[{time.perf_counter() - began:5.0f}s] {method} seed {seed}: "
                  + ", ".join(f"{k} {v:.3f}" for k, v in metrics.items() if isinstance(v, float)), flush=True)

    names = ["annotator", *args.methods]
    columns = [c for c in COLUMNS if args.heldout or not c[0].startswith("heldout")]
    lines = ["| method | " + " | ".join(title for _, title in columns) + " |", "|---" * (len(columns) + 1) + "|"]
    for name in names:
        rows = [runs.get(f"{name}/seed{s}", {}) for s in args.seeds]
        stopped = sum("stopped" in r for r in rows)
        cells = [mean_std([r.get(key) for r in rows if "stopped" not in r]) for key, _ in columns]
        label = f"{args.annotator} annotator itself" if name == "annotator" else name
        lines.append(f"| {label}{f' ({stopped} of {len(rows)} seeds stopped)' if stopped else ''} | "
                     + " | ".join(cells) + " |")
    table = "\n".join(lines)
    print(f"\nReward models on XSTest answers ({args.annotator} annotator, 50 gold labels), mean±std over seeds "
          f"{args.seeds}:\n\n{table}")
    write_json(out, {"command": " ".join(sys.argv), "config": str(CONFIGS[args.annotator].relative_to(ROOT)),
                     "annotator": args.annotator, "seeds": args.seeds, "extra": args.extra, "runs": runs,
                     "table_markdown": table, "seconds": round(time.perf_counter() - began, 1)})
    print(f"\nwrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
