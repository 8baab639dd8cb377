"""PPO vs GRPO vs RLOO in `align`: the same reward, prompts, policy, seeds and wall-clock training budget per run.

Each algorithm trains the policy against the same reward model (variant ours_50: the robust-UU classifier refined with
50 gold labels), on the same training prompts, with its own section of the config (ppo:, grpo:, rloo:), for about the
same training time: a short calibration run (``--calibration-updates`` updates, seed 0) measures the algorithm's
seconds per update, and the runs then get ``floor(budget / seconds per update)`` updates (``ppo.total_episodes`` for
PPO, ``<algorithm>.max_steps`` for GRPO and RLOO). Every policy (and the SFT policy) answers the same held-out prompts
with the same sampling settings and is scored by the same independent judge. Per algorithm, mean ± std over seeds:

- judged unsafe: share of answers to held-out harmful prompts the judge calls unsafe (lower is safer);
- over-refusal: refusal rate on XSTest's safe prompts (lower is better);
- refusal (harmful): share of those answers the keyword refusal detector calls a refusal;
- KL to SFT: summed over the answer's tokens, on the held-out answers (the same estimator for every algorithm);
- judge reward and training reward: the judge's and the training reward's (ours_50's classifier logit, higher =
  safer) mean score of the answers to the held-out harmful prompts: how far each algorithm moved the reward it
  optimises, and the judge's, which it never saw;
- seconds per update, updates, training seconds (the budget actually used) and completions per update.

    python benchmarks/align_algorithms.py                   # configs/demo.yaml, 3 seeds, 300 s of training per run
    python benchmarks/align_algorithms.py --budget 600 --seeds 5 --algorithms grpo rloo
    python benchmarks/align_algorithms.py --smoke           # tiny random models: proves the machinery (~2 min)
    python benchmarks/align_algorithms.py --budget 180 --refine.classifier.max_length 128   # any other argument is
                                                            # a config override, passed to every align run

The rewards come from one refine + export run of the config (``<work>/rewards``, variants labels50 and gold), used
by every algorithm through ``ppo.reward_models`` and ``evaluate.judge``; ``--judge DIR`` replaces the gold judge with
another reward model folder (e.g. one from ``python -m reward train-pairs`` on HH-RLHF pairs, which ranks this
policy's refusals above its compliances where the XSTest-trained judge does not: README). Every step is an align run directory under
``<work>/<algorithm>/``, so an interrupted benchmark resumes where it stopped (finished stages are skipped), and the
results of finished algorithms are read back from the results JSON when their settings match. ``--smoke`` replaces
the policy and both reward models with tiny random ones (the real tokenizers): its numbers say nothing about the
algorithms.
"""

from __future__ import annotations

import argparse
import logging
import math
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from align.config import AlignConfig  # noqa: E402
from refine.config_loading import load_config  # noqa: E402
from refine.rundir import read_json, write_json  # noqa: E402

ALGORITHMS = ("ppo", "grpo", "rloo")
VARIANT = "ours_50"
METRICS = (("unsafe_fraction", "judged unsafe", "{:.1%}"), ("refusal_fraction", "refusal (harmful)", "{:.1%}"),
           ("over_refusal_fraction", "over-refusal", "{:.1%}"), ("kl_mean", "KL to SFT", "{:.3f}"),
           ("judge_mean", "judge reward", "{:.3f}"), ("training_reward", "training reward", "{:.3f}"))
# --smoke: tiny sizes, so each run takes seconds.
SMOKE_OVERRIDES = ["--prompts.num_train", "16", "--prompts.overlap_policy", "drop", "--prompts.num_eval_per_source", "2", "--ppo.normalize_rewards",
                   "false", "--ppo.reward_higher_is_safer", "true", "--evaluate.judge_higher_is_safer", "true",
                   "--evaluate.batch_size", "8", "--evaluate.max_new_tokens", "8"]
SMOKE_LENGTH = {"ppo": ["--ppo.response_length", "8"], "grpo": ["--grpo.max_completion_length", "8"],
                "rloo": ["--rloo.max_completion_length", "8"]}


def align(argv: list[str]) -> None:
    """Run `python -m align ...` in this process; a non-zero exit is an error (align printed why)."""
    from align.cli import main

    code = main([str(a) for a in argv])
    if code != 0:
        raise RuntimeError(f"python -m align {' '.join(map(str, argv))} exited with {code}")


def build_smoke_models(folder: Path) -> dict[str, str]:
    """A 2-layer Llama policy (SmolLM2 tokenizer) and two random 2-layer BERT classifiers (MiniLM tokenizer)."""
    import torch
    from transformers import (
        AutoTokenizer,
        BertConfig,
        BertForSequenceClassification,
        LlamaConfig,
        LlamaForCausalLM,
    )

    from refine.packaged_models import locate_model

    paths = {name: folder / name for name in ("policy", "reward", "judge")}
    if all((p / "config.json").is_file() for p in paths.values()):
        return {name: str(p) for name, p in paths.items()}
    smollm2 = locate_model("smollm2")
    tokenizer = AutoTokenizer.from_pretrained(smollm2.path, gguf_file=smollm2.gguf_file)
    torch.manual_seed(0)
    policy = LlamaForCausalLM(LlamaConfig(
        vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
        num_key_value_heads=1, max_position_embeddings=1024, pad_token_id=tokenizer.pad_token_id,
        eos_token_id=tokenizer.eos_token_id, bos_token_id=tokenizer.bos_token_id, tie_word_embeddings=True))
    policy.save_pretrained(paths["policy"])
    tokenizer.save_pretrained(paths["policy"])
    minilm = AutoTokenizer.from_pretrained(locate_model("minilm").path)
    for seed, name in ((1, "reward"), (2, "judge")):
        torch.manual_seed(seed)
        classifier = BertForSequenceClassification(BertConfig(
            vocab_size=minilm.vocab_size, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
            intermediate_size=64, num_labels=1))
        classifier.save_pretrained(paths[name])
        minilm.save_pretrained(paths[name])
    return {name: str(p) for name, p in paths.items()}


def length_overrides(config: AlignConfig, algorithm: str, updates: int) -> list[str]:
    """The training length that gives ``updates`` updates (one process)."""
    if algorithm == "ppo":
        per_update = config.ppo.per_device_train_batch_size * config.ppo.gradient_accumulation_steps
        return ["--ppo.total_episodes", str(updates * per_update)]
    return [f"--{algorithm}.max_steps", str(updates)]


def mean_std(values: list[float | None]) -> tuple[float, float]:
    array = np.array([v for v in values if v is not None], dtype=np.float64)
    if array.size == 0:
        return math.nan, math.nan
    return float(array.mean()), float(array.std(ddof=1)) if array.size > 1 else math.nan


def fmt(pair: tuple[float, float], pattern: str) -> str:
    mean, std = pair
    if math.isnan(mean):
        return "-"
    return pattern.format(mean) + ("" if math.isnan(std) else f" ± {pattern.format(std)}")


def policy_numbers(summary: dict) -> dict:
    """The METRICS of one policy's evaluation summary (the training reward is ours_50's, for SFT too)."""
    numbers = {key: summary.get(key) for key, _, _ in METRICS}
    numbers["training_reward"] = summary["rewards_mean"][VARIANT]
    return numbers


def run_algorithm(algorithm: str, args, config_path: Path, base: list[str], config: AlignConfig,
                  work: Path) -> dict:
    """Calibrate, then train, evaluate and report ``algorithm`` for every seed; returns its numbers."""
    extra = [*base, "--algorithm", algorithm, *(SMOKE_LENGTH[algorithm] if args.smoke else [])]
    calibration = work / algorithm / "calibration"
    # --overwrite_output_dir: a stage whose settings changed (another budget, more seeds) is redone instead of refused;
    # finished stages with the same settings are still skipped.
    align(["train", "--config", config_path, "--output_dir", calibration, "--overwrite_output_dir", "--ppo.num_seeds",
           "1", *extra, *length_overrides(config, algorithm, args.calibration_updates)])
    probe = read_json(calibration / algorithm / VARIANT / f"seed_{config.ppo.seed}" / "train.json")
    updates = max(1, int(args.budget // probe["seconds_per_update"]))
    print(f"{algorithm}: {probe['seconds_per_update']:.2f} s per update in calibration -> {updates} updates per run "
          f"for a {args.budget:g} s budget", flush=True)

    run = work / algorithm / f"budget_{args.budget:g}s"
    align(["pipeline", "--config", config_path, "--output_dir", run, "--overwrite_output_dir", "--ppo.num_seeds",
           args.seeds, *extra, *length_overrides(config, algorithm, updates)])
    seeds = [config.ppo.seed + i for i in range(args.seeds)]
    per_seed, sft = [], []
    for seed in seeds:
        summary = read_json(run / "evaluate" / VARIANT / f"seed_{seed}" / "summary.json")
        train = read_json(run / algorithm / VARIANT / f"seed_{seed}" / "train.json")
        per_seed.append({"seed": seed, **policy_numbers(summary),
                         "updates": train["updates"], "episodes": train["episodes"], "seconds": train["seconds"],
                         "seconds_per_update": train["seconds_per_update"], "final": train["final"]})
        sft_summary = read_json(run / "evaluate" / "sft" / f"seed_{seed}" / "summary.json")
        sft.append({"seed": seed, **policy_numbers(sft_summary)})
    return {"calibration_seconds_per_update": probe["seconds_per_update"], "updates": updates, "run_dir": str(run),
            "per_seed": per_seed, "sft_per_seed": sft}


def table(results: dict[str, dict]) -> list[str]:
    header = ["policy", "updates", "s/update", "train s", "completions/update"] + [label for _, label, _ in METRICS]
    rows = []
    first = next(iter(results.values()), None)
    if first is not None:
        rows.append(["sft"] + ["-"] * 4 + [fmt(mean_std([s[k] for s in first["sft_per_seed"]]), p)
                                           for k, _, p in METRICS])
    for algorithm, result in results.items():
        runs = result["per_seed"]
        rows.append([algorithm, str(result["updates"]), fmt(mean_std([r["seconds_per_update"] for r in runs]), "{:.2f}"),
                     fmt(mean_std([r["seconds"] for r in runs]), "{:.1f}"),
                     fmt(mean_std([r["episodes"] / max(r["updates"], 1) for r in runs]), "{:.0f}")]
                    + [fmt(mean_std([r[k] for r in runs]), p) for k, _, p in METRICS])
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return lines + ["| " + " | ".join(row) + " |" for row in rows]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default=str(ROOT / "configs" / "demo.yaml"))
    parser.add_argument("--algorithms", nargs="+", default=list(ALGORITHMS), choices=ALGORITHMS)
    parser.add_argument("--seeds", type=int, default=3, help="runs per algorithm: seeds ppo.seed, ppo.seed + 1, ...")
    parser.add_argument("--budget", type=float, default=None,
                        help="training seconds per run (default 300; --smoke: 3)")
    parser.add_argument("--calibration-updates", type=int, default=2,
                        help="updates of the calibration run (its seconds per update include the first update's "
                        "warm-up, so runs come out a little under the budget)")
    parser.add_argument("--judge", default=None,
                        help="judge model folder (default: the gold-trained classifier of the rewards run)")
    parser.add_argument("--smoke", action="store_true", help="tiny random policy and reward models (seconds per run)")
    parser.add_argument("--work-dir", default=None, help="default: runs/bench_align_algorithms[_smoke]")
    parser.add_argument("--out", default=None, help="default: benchmarks/results/align_algorithms[_smoke].json")
    args, overrides = parser.parse_known_args()
    suffix = "_smoke" if args.smoke else ""
    args.budget = args.budget if args.budget is not None else (3.0 if args.smoke else 300.0)
    work = Path(args.work_dir or ROOT / "runs" / f"bench_align_algorithms{suffix}").resolve()
    out = Path(args.out or ROOT / "benchmarks" / "results" / f"align_algorithms{suffix}.json")
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    config_path = Path(args.config).resolve()
    began = time.perf_counter()

    if args.smoke:
        models = build_smoke_models(work / "models")
        base = [*SMOKE_OVERRIDES, "--policy.model_name_or_path", models["policy"], *overrides]
        reward, judge = models["reward"], models["judge"]
    else:
        base = list(overrides)
        align(["pipeline", "--config", config_path, "--output_dir", work / "rewards", "--variants", "[sft, ours_50]",
               "--evaluate.judge", "gold", "--stop_after", "export", *overrides])
        reward, judge = work / "rewards" / "reward" / "labels50" / "model", work / "rewards" / "reward" / "gold" / "model"
    judge = Path(args.judge).resolve() if args.judge else judge
    config = load_config(AlignConfig, config_path, base)
    # The same answers' settings for every algorithm (not each algorithm's own length and temperature), and the
    # rewards were evaluated in the rewards run: no preference-pair evaluation per algorithm.
    generation = ["--evaluate.max_new_tokens", str(config.evaluate.max_new_tokens or config.ppo.response_length),
                  "--evaluate.temperature", str(config.evaluate.temperature or config.ppo.temperature)]
    base += ["--variants", "[sft, ours_50]", "--ppo.reward_models", f"{{ours_50: {reward}}}", "--evaluate.judge",
             str(judge), "--evaluate.reward_pairs", "null", *generation]
    settings = {"config": str(config_path), "seeds": args.seeds, "budget_seconds": args.budget,
                "calibration_updates": args.calibration_updates, "smoke": args.smoke, "overrides": [str(a) for a in base]}

    previous = read_json(out) if out.is_file() else {}
    finished = previous.get("algorithms", {}) if previous.get("settings") == settings else {}
    results = {}
    for algorithm in args.algorithms:
        if algorithm in finished:
            print(f"{algorithm}: finished earlier with these settings, read back from {out}")
            results[algorithm] = finished[algorithm]
        else:
            results[algorithm] = run_algorithm(algorithm, args, config_path, base, config, work)
        write_json(out, {"command": " ".join(["python", *sys.argv]), "settings": settings,
                         "algorithms": {**finished, **results}, "seconds": round(time.perf_counter() - began, 1)})
    lines = table(results)
    write_json(out, {"command": " ".join(["python", *sys.argv]), "settings": settings,
                     "algorithms": {**finished, **results}, "table": lines,
                     "seconds": round(time.perf_counter() - began, 1)})
    print("\n".join(lines))
    print(f"{'SMOKE (random tiny models: the numbers mean nothing) ' if args.smoke else ''}results: {out} "
          f"({time.perf_counter() - began:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
