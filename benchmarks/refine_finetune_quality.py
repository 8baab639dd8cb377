"""Quality of the fine-tuning backbone: MiniLM-L6 fine-tuned with robust UU vs pn on the same pseudo-labels.

The recipe of `configs/refine/minilm_finetune.yaml` (full fine-tune, 1 epoch per iteration, max_length 128, decision
threshold matched to pi for every method), 50 gold labels, 3 seeds; gold-test accuracy per iteration next to the
frozen-feature baselines of the same run. openai_moderation with the embedding labeller takes about 7 minutes per seed
on 2 cores; hatecheck with the simulated annotator about 2. Runs are resumable: a finished run directory with the
same config is read back, not retrained.

    python benchmarks/refine_finetune_quality.py [--seeds 0 1 2] [--iterations 2]
    python benchmarks/refine_finetune_quality.py --dataset hatecheck --annotator simulated   # writes ..._hatecheck_simulated.json
    python benchmarks/refine_finetune_quality.py --dataset hatecheck --annotator simulated --epochs 2 --iterations 1
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
from refine.config_loading import load_config  # noqa: E402
from refine.loop import run_refine  # noqa: E402
from refine.rundir import read_json, write_json  # noqa: E402

sys.path.insert(0, str(ROOT / "benchmarks"))
from refine_quality import DATASETS, annotator_args  # noqa: E402

CONFIG = ROOT / "configs" / "refine" / "minilm_finetune.yaml"
RECIPE_SECTIONS = ("classifier", "train", "finetune")  # taken from CONFIG for the other data sets
METHODS = {"robust_uu": [], "robust_uu+L": ["--train.labeled_weight", "10"], "pn": ["--train.loss", "pn"]}


def recipe_overrides() -> list[str]:
    """minilm_finetune.yaml's classifier/train/finetune sections as command-line overrides."""
    import yaml

    recipe = yaml.safe_load(CONFIG.read_text())
    overrides = []
    for section in RECIPE_SECTIONS:
        for key, value in recipe.get(section, {}).items():
            overrides += [f"--{section}.{key}", str(value)]
    return overrides


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--iterations", type=int, default=2)
    parser.add_argument("--epochs", type=float, default=None,
                        help="finetune.num_train_epochs per iteration (default: the recipe's, 1); changes the default "
                        "work dir and output name")
    parser.add_argument("--dataset", default="openai_moderation", choices=list(DATASETS),
                        help="openai_moderation runs minilm_finetune.yaml as shipped; the others run their own "
                        "config with that file's classifier/train/finetune sections.")
    parser.add_argument("--annotator", default="embedding", choices=["embedding", "simulated"])
    parser.add_argument("--work-dir", default=None, help="default: runs/bench_finetune[_<dataset>_<annotator>][_<n>epochs]")
    parser.add_argument("--out", default=None,
                        help="default: benchmarks/results/refine_finetune_quality[_<dataset>_<annotator>][_<n>epochs].json")
    args = parser.parse_args()
    default_setting = (args.dataset, args.annotator) == ("openai_moderation", "embedding")
    suffix = "" if default_setting else f"_{args.dataset}_{args.annotator}"
    if args.epochs is not None:
        suffix += f"_{args.epochs:g}epochs"
    work_dir = Path(args.work_dir or ROOT / "runs" / f"bench_finetune{suffix}")
    args.out = args.out or str(ROOT / "benchmarks" / "results" / f"refine_finetune_quality{suffix}.json")
    config_path, recipe = (CONFIG, []) if args.dataset == "openai_moderation" else (ROOT / DATASETS[args.dataset],
                                                                                     recipe_overrides())
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")

    epochs = [] if args.epochs is None else ["--finetune.num_train_epochs", str(args.epochs)]
    began, runs = time.perf_counter(), {}
    for seed in args.seeds:
        for method, extra in METHODS.items():
            folder = work_dir / method / str(seed)
            overrides = [*recipe, *epochs, "--data.seed", str(seed), "--train.seed", str(seed),
                         "--loop.iterations", str(args.iterations), "--cache_dir", str(work_dir / "cache"),
                         "--output_dir", str(folder), *annotator_args(args.annotator, seed, hf_max_examples=0), *extra]
            table = run_refine(load_config(RefineConfig, config_path, overrides))
            summary = read_json(folder / "refine" / "summary.json")
            runs[f"{method}/seed{seed}"] = {
                "test_accuracy": table["test_accuracy"].round(4).tolist(),
                "labeled_accuracy": table["labeled_accuracy"].round(4).tolist(),
                "baselines": {k: v["accuracy"] for k, v in summary["baselines"].items()},
            }
            print(f"[{time.perf_counter() - began:5.0f}s] {method} seed {seed}: "
                  f"{runs[f'{method}/seed{seed}']['test_accuracy']}", flush=True)

    def mean(values) -> str:
        return f"{np.mean(values):.3f}±{np.std(values):.3f}"

    first = [runs[f"robust_uu/seed{s}"] for s in args.seeds]
    lines = ["| method | iteration 0 (labeller) | iteration 1 | final |", "|---|---|---|---|"]
    for method in METHODS:
        accs = np.array([runs[f"{method}/seed{s}"]["test_accuracy"] for s in args.seeds])
        lines.append(f"| {method} | {mean(accs[:, 0])} | {mean(accs[:, 1])} | {mean(accs[:, -1])} |")
    for name in first[0]["baselines"]:
        lines.append(f"| baseline: {name} | | | {mean([r['baselines'][name] for r in first])} |")
    table = "\n".join(lines)
    print(f"\nGold-test accuracy, MiniLM fine-tuned, {args.dataset}, {args.annotator} annotator, mean±std over seeds "
          f"{args.seeds}:\n\n{table}")
    write_json(args.out, {"command": " ".join(sys.argv), "config": str(config_path.relative_to(ROOT)),
                          "dataset": args.dataset, "annotator": args.annotator, "epochs": args.epochs,
                          "recipe": str(CONFIG.relative_to(ROOT)),
                          "iterations": args.iterations, "seeds": args.seeds, "runs": runs, "table_markdown": table,
                          "seconds": time.perf_counter() - began})
    print(f"\nwrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
