"""`python -m align train|ppo|evaluate|report|pipeline --config x.yaml [--section.key value ...]`.

All commands read the same config (``AlignConfig``, e.g. configs/demo.yaml). ``pipeline`` runs every stage; the
others run one stage and stop with a one-line error naming the command to run when an input stage is missing.
``train`` trains with the configured ``algorithm`` (ppo, grpo or rloo; e.g. ``--algorithm grpo``); ``ppo`` is the
same stage for ``algorithm: ppo`` (and refuses another). Both run under ``accelerate launch`` (several CPU processes
or GPUs, DeepSpeed).
"""

from __future__ import annotations

import argparse
import sys

from refine.cli_runner import EXIT_OK, EXIT_USAGE, run_cli, usage_error

COMMANDS = {
    "train": "Train a policy per variant and seed with the configured algorithm (ppo, grpo or rloo; writes the prompt "
             "split first if missing).",
    "ppo": "The train command for algorithm ppo (the default).",
    "evaluate": "Evaluate the training rewards and the judge on held-out data (reward_eval), then answer the held-out "
                "prompts with every policy and score the answers with the training rewards and the judge.",
    "report": "Write report.html, report.md, summary.json and figures from the evaluation.",
    "pipeline": "Run everything: prompts, refine + export per variant, reward evaluation, training (the configured "
                "algorithm), evaluate, report.",
}
USAGE = "python -m align {train,ppo,evaluate,report,pipeline} --config CONFIG.yaml [--section.key VALUE ...]"
SHARDED = ("train", "ppo")  # the commands that take `accelerate launch`


def make_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m align", usage=USAGE, add_help=False,
        description="Align a policy with PPO, GRPO or RLOO against refined safety rewards, evaluate it and report. "
        + " ".join(f"{name}: {text}" for name, text in COMMANDS.items()),
    )
    parser.add_argument("command", nargs="?", choices=list(COMMANDS), help="What to run.")
    parser.add_argument("--config", help="YAML config file (see configs/demo.yaml).")
    parser.add_argument("-h", "--help", action="store_true", help="Show every config key with its help and exit.")
    return parser


def print_help(parser: argparse.ArgumentParser) -> None:
    from align.config import AlignConfig
    from refine.cli import print_config_help

    print_config_help(parser, AlignConfig)


def run_command(command: str, config, config_path: str | None) -> str:
    """Run one command; returns the line to print on success."""
    if command in SHARDED:
        from align.train import run_training

        if command == "ppo" and config.algorithm != "ppo":
            raise ValueError(f"`align ppo` trains with PPO, but algorithm is {config.algorithm}; run `python -m align "
                             f"train --config {config_path or 'CONFIG.yaml'}` (it trains with the configured "
                             "algorithm), or pass --algorithm ppo.")
        folders = run_training(config, config_path=config_path)
        return "policies: " + ", ".join(str(f / "policy") for f in folders) if folders else "no variant to train"
    if command == "evaluate":
        from align.evaluate import run_evaluate

        folders = run_evaluate(config, config_path=config_path)
        return "samples: " + ", ".join(str(f / "samples.jsonl") for f in folders)
    if command == "report":
        from align.report import run_report

        return f"report: {run_report(config, config_path=config_path) / 'report.html'}"
    from align.pipeline import run_pipeline

    root = run_pipeline(config, config_path=config_path)
    report = root / "report" / "report.html"
    return f"report: {report}" if report.is_file() else f"run: {root} (stopped after {config.stop_after})"


def align_command(command: str, config_path: str | None, overrides: list[str]) -> str:
    """Load the config and run ``command`` in the launch's process group; returns the line to print."""
    from align.config import AlignConfig, check_algorithm_overrides
    from refine.config_loading import load_config, parse_overrides
    from refine.distributed import distributed_session

    config = load_config(AlignConfig, config_path, overrides)
    check_algorithm_overrides(config, parse_overrides(overrides))
    import torch  # after the config checks, so that a bad config is reported without waiting for torch
    from transformers.utils import logging as transformers_logging

    transformers_logging.disable_progress_bar()  # weight loading bars; silr's and TRL's bars stay
    if config.num_threads is not None:
        torch.set_num_threads(config.num_threads)
    with distributed_session("align"):  # under `accelerate launch`: join the process group (gloo or nccl)
        return run_command(command, config, config_path)


def main(argv: list[str] | None = None) -> int:
    parser = make_parser()
    args, overrides = parser.parse_known_args(argv)
    if args.help:
        print_help(parser)
        return EXIT_OK
    if args.command is None or (args.config is None and not overrides):
        return usage_error(parser, "choose a command (train, ppo, evaluate, report, pipeline) and pass --config "
                           "CONFIG.yaml")
    from refine.distributed import launched_rank, multi_process_refusal

    main_process = launched_rank() == 0
    refusal = None if args.command in SHARDED else multi_process_refusal("align", args.command)
    if refusal:
        if main_process:
            print(refusal + " (only `align train`, `align ppo` and `refine` take `accelerate launch`)",
                  file=sys.stderr)
        return EXIT_USAGE
    return run_cli(lambda: align_command(args.command, args.config, overrides), main_process=main_process)


if __name__ == "__main__":
    sys.exit(main())
