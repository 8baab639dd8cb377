"""Does alignment against the refined reward make the policy safer? SFT vs vanilla RLAIF vs ours, 3 seeds, on CPU.

The demo's pipeline (`configs/demo.yaml`: response-level rewards refined from the string matcher's labels of XSTest
answers; SmolLM2-135M-Instruct as the SFT policy) at a size where the policies can move: more PPO updates per run,
three seeds per variant, and more held-out prompts. Every policy answers the same held-out harmful prompts
(HarmBench, AdvBench, SimpleSafetyTests, Do-Not-Answer) and XSTest safe prompts that no reward was trained on, and is
scored by the independent judge (the demo's: a MiniLM reward model trained on HH-RLHF harmless preference pairs,
never a training reward; the report also shows how every reward and the judge rank the SFT policy's own refusals
above its other answers). Per variant, mean ± std over seeds:

- judged unsafe: share of answers to harmful prompts the judge calls unsafe (lower is safer);
- refusal rate on harmful prompts, and over-refusal (refusals of safe prompts; lower is better), by
  `align.refusal` (a keyword detector that agrees with XSTest's human labels on 88% of answers);
- the judge's mean reward, KL to SFT, answer length.

The verdict line compares ours_50 with SFT and with vanilla: a difference counts only when it is larger than the
spread over seeds (the sum of the two standard deviations).

    python benchmarks/align_quality.py                          # 3 seeds, 40 PPO updates of 4 rollouts per run
    python benchmarks/align_quality.py --updates 60 --seeds 5

The whole benchmark is one align run directory (`runs/bench_align_quality` by default): an interrupted run resumes
where it stopped, and a finished one is read back.
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from refine.rundir import read_json, write_json  # noqa: E402

METRICS = (("unsafe_fraction", "judged unsafe (harmful)", "{:.1%}"), ("refusal_fraction", "refusal (harmful)", "{:.1%}"),
           ("over_refusal_fraction", "over-refusal (safe)", "{:.1%}"), ("judge_mean", "judge reward", "{:.3f}"),
           ("kl_mean", "KL to SFT", "{:.3f}"), ("length_mean", "answer tokens", "{:.1f}"))


def verdict(stats: dict, key: str, ours: str, other: str) -> str:
    """Whether ``ours`` is below ``other`` on ``key`` by more than the spread over seeds."""
    (m1, s1), (m2, s2) = stats[ours][key], stats[other][key]
    if m1 is None or m2 is None:
        return f"{ours} vs {other}: not measured"
    gap, spread = m2 - m1, s1 + s2
    word = "lower" if gap > spread else ("higher" if -gap > spread else "not different (within the spread over seeds)")
    return f"{ours} vs {other} on {key}: {m1:.3f} vs {m2:.3f} (gap {gap:+.3f}, spread {spread:.3f}) → {word}"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default=str(ROOT / "configs" / "demo.yaml"))
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--updates", type=int, default=40, help="PPO updates per run (4 rollouts each)")
    parser.add_argument("--eval-per-source", type=int, default=25,
                        help="held-out prompts per source (4 harmful sources; XSTest safe: those no reward saw)")
    parser.add_argument("--name", default="bench_align_quality")
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "align_quality.json"))
    args, extra = parser.parse_known_args()
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    from align.cli import main as align_main

    overrides = ["--name", args.name, "--ppo.num_seeds", str(args.seeds), "--ppo.total_episodes",
                 str(4 * args.updates), "--prompts.num_eval_per_source", str(args.eval_per_source),
                 "--evaluate.reward_max_pairs", "800", *extra]
    began = time.perf_counter()
    code = align_main(["pipeline", "--config", args.config, *overrides])
    if code:
        return code
    run = ROOT / "runs" / args.name
    summary = read_json(run / "report" / "summary.json")  # the report's mean and std (ddof=1) over seeds
    variants, seeds, runs = summary["variants"], summary["seeds"], summary["per_seed"]
    stats = {v: {key: (row.get(f"{key}_mean"), row.get(f"{key}_std")) for key, _, _ in METRICS}
             for v, row in summary["per_variant"].items()}
    lines = ["| variant | " + " | ".join(title for _, title, _ in METRICS) + " |", "|---" * (len(METRICS) + 1) + "|"]
    for variant in variants:
        cells = []
        for key, _, pattern in METRICS:
            mean, std = stats[variant][key]
            cells.append("–" if mean is None else f"{pattern.format(mean)} ± {pattern.format(std)}")
        lines.append(f"| {variant} | " + " | ".join(cells) + " |")
    verdicts = [verdict(stats, "unsafe_fraction", "ours_50", other) for other in ("sft", "vanilla_rlaif")
                if other in stats and "ours_50" in stats]
    verdicts += [verdict(stats, "over_refusal_fraction", "ours_50", "sft")] if "sft" in stats else []
    table = "\n".join(lines)
    seconds = time.perf_counter() - began
    print(f"\nPolicies on held-out prompts, judged by the independent judge; mean ± std over seeds {seeds}:\n\n{table}\n")
    print("\n".join(verdicts))
    rewards = summary.get("reward_models", {})
    write_json(args.out, {"command": " ".join(sys.argv), "config": args.config, "overrides": overrides,
                          "seeds": seeds, "updates": args.updates, "per_seed": runs, "stats": stats,
                          "verdicts": verdicts, "reward_models": rewards, "table_markdown": table,
                          "seconds_this_invocation": round(seconds, 1),
                          "pipeline_history": read_json(run / "pipeline.json")})
    print(f"\nwrote {args.out} ({seconds / 60:.1f} min in this invocation; the run's stage timings are in it)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
