"""`python -m refine --config x.yaml [--section.key value ...]`: annotate a corpus and refine its labels."""

from __future__ import annotations

import argparse
import logging
import os
import sys

from refine.cli_runner import EXIT_OK, run_cli, usage_error

USAGE = "python -m refine --config CONFIG.yaml [--section.key VALUE ...]"


def make_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m refine", usage=USAGE, add_help=False,
        description="Annotate a corpus with an LLM (or another annotator), then refine the labels by robust UU "
        "learning. Every config key can be overridden on the command line.",
    )
    parser.add_argument("--config", help="YAML config file (see configs/refine/).")
    parser.add_argument("-h", "--help", action="store_true", help="Show every config key with its help and exit.")
    return parser


def print_config_help(parser: argparse.ArgumentParser, cls: type) -> None:
    """``--help`` of a CLI: the parser's usage, then every config key of ``cls`` with its default and help."""
    from refine.config_loading import describe_fields

    parser.print_help()
    print("\nconfig keys (YAML sections, or --section.key on the command line):")
    for key, default, help_text in describe_fields(cls):
        print(f"  {key}  (default: {default!r})\n      {help_text}")


def print_help(parser: argparse.ArgumentParser) -> None:
    from refine.config import RefineConfig

    print_config_help(parser, RefineConfig)


def check_model_folders(config) -> None:
    """Fail before any work when a model setting names a folder that is not there: the ``finetune`` backbone loads its
    model only after annotation, which can take hours. (The ``openai`` annotator's model is a served name, not a path.)

    Raises:
        FileNotFoundError: Naming the setting, from :func:`refine.packaged_models.locate_model`.
    """
    from refine.packaged_models import locate_model

    locate_model(config.classifier.model_name_or_path, setting="classifier.model_name_or_path")
    if config.annotator.kind in ("hf", "embedding") and config.annotator.model_name_or_path:
        locate_model(config.annotator.model_name_or_path, config.annotator.gguf_file,
                     setting="annotator.model_name_or_path")


def refine_command(config_path: str | None, overrides: list[str]) -> str:
    """Load the config, run (or resume) refine; returns the table and where the results are."""
    from refine.config import RefineConfig
    from refine.config_loading import load_config
    from refine.loop import run_refine
    from refine.report import format_table
    from refine.rundir import read_json

    config = load_config(RefineConfig, config_path, overrides)
    check_model_folders(config)
    table = run_refine(config)
    baselines_path = os.path.join(config.output_dir, "refine", "baselines.json")
    baselines = read_json(baselines_path) if os.path.exists(baselines_path) else {}
    return (f"{format_table(table, baselines)}\nresults: {os.path.join(config.output_dir, 'refine')} (metrics.csv, "
            "summary.json, accuracy.png, priors.png)")


def main(argv: list[str] | None = None) -> int:
    parser = make_parser()
    args, overrides = parser.parse_known_args(argv)
    if args.help:
        print_help(parser)
        return EXIT_OK
    if args.config is None and not overrides:
        return usage_error(parser, "pass --config CONFIG.yaml (see configs/refine/)")
    from refine.distributed import launched_rank

    # Every process of a multi-process launch logs its progress; the table is printed once.
    return run_cli(lambda: refine_command(args.config, overrides), main_process=launched_rank() == 0,
                   log_level=logging.INFO)


if __name__ == "__main__":
    sys.exit(main())
