"""Quality of the fine-tuning backbone: MiniLM-L6 fine-tuned with robust UU vs pn on the same pseudo-labels.

openai_moderation, the embedding labeller, 50 gold labels, `configs/refine/minilm_finetune.yaml` (full fine-tune,
1 epoch per iteration, max_length 128), 2 iterations, 3 seeds; gold-test accuracy per iteration next to the
frozen-feature baselines of the same run. About 7 minutes per seed on 2 cores. Runs are resumable: a finished run
directory with the same config is read back, not retrained.

    python benchmarks/refine_finetune_quality.py [--seeds 0 1 2] [--iterations 2]
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

CONFIG = ROOT / "configs" / "refine" / "minilm_finetune.yaml"
METHODS = {"robust_uu": [], "robust_uu+L": ["--train.labeled_weight", "10"], "pn": ["--train.loss", "pn"]}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--iterations", type=int, default=2)
    parser.add_argument("--work-dir", default=str(ROOT / "runs" / "bench_finetune"))
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "refine_finetune_quality.json"))
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")

    began, runs = time.perf_counter(), {}
    for seed in args.seeds:
        for method, extra in METHODS.items():
            folder = Path(args.work_dir) / method / str(seed)
            overrides = ["--data.seed", str(seed), "--train.seed", str(seed), "--loop.iterations", str(args.iterations),
                         "--cache_dir", str(Path(args.work_dir) / "cache"), "--output_dir", str(folder), *extra]
            table = run_refine(load_config(RefineConfig, CONFIG, overrides))
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
    print(f"\nGold-test accuracy, MiniLM fine-tuned, mean±std over seeds {args.seeds}:\n\n{table}")
    write_json(args.out, {"command": " ".join(sys.argv), "config": str(CONFIG.relative_to(ROOT)),
                          "iterations": args.iterations, "seeds": args.seeds, "runs": runs, "table_markdown": table,
                          "seconds": time.perf_counter() - began})
    print(f"\nwrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
