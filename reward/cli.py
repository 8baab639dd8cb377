"""`python -m reward export|score|serve|evaluate|train-pairs`: export a refine run as a reward model, score texts, serve
rewards, evaluate a reward model, train one on preference pairs."""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from refine.cli_runner import EXIT_USAGE, run_cli, usage_error


def make_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m reward",
        description="Reward models from refined safety classifiers. Rewards are -unsafe_logit: higher means safer.",
    )
    commands = parser.add_subparsers(dest="command", metavar="{export,score,serve,evaluate,train-pairs}")

    export = commands.add_parser("export", help="Export a refine run's classifier as a Hugging Face reward model.")
    export.add_argument("--run", required=True, help="Run directory made by `python -m refine` (runs/<name>).")
    export.add_argument("--iteration", default="best",
                        help="best (highest accuracy on the gold set L), last, or an iteration number k >= 1.")
    export.add_argument("--out", default=None,
                        help="Folder to create (must not exist, or be empty). Default: <run>/reward.")
    export.add_argument("--overwrite", action="store_true", help="Replace --out if it is an earlier silr export.")
    export.add_argument("--trust-remote-code", action="store_true",
                        help="Allow running the Python code of a classifier trained with trust_remote_code (its base "
                        "model's custom modeling files). Off by default: a run folder never turns it on by itself.")

    score = commands.add_parser("score", help="Score a JSONL file; each row gets a reward column.")
    _add_model_arguments(score)
    score.add_argument("--input", required=True, help="JSONL file, one JSON object per line.")
    score.add_argument("--output", required=True, help="JSONL file to write: the input rows plus the reward column.")
    score.add_argument("--text-column", default=None, help="Column holding whole texts (default: text).")
    score.add_argument("--prompt-column", default=None, help="Column holding prompts (with --response-column).")
    score.add_argument("--response-column", default=None, help="Column holding responses (with --prompt-column).")
    score.add_argument("--reward-column", default="reward", help="Name of the output column.")
    score.add_argument("--overwrite", action="store_true", help="Replace --output if it exists.")

    serve = commands.add_parser("serve", help="Serve rewards over HTTP (OpenRLHF remote reward-model protocol).")
    _add_model_arguments(serve)
    serve.add_argument("--host", default="127.0.0.1", help="Address to bind; 0.0.0.0 exposes it to the network.")
    serve.add_argument("--port", type=int, default=5000, help="Port (0 picks a free one).")
    serve.add_argument("--max-batch", type=int, default=64, help="Most texts per request (more: HTTP 413).")
    serve.add_argument("--max-chars", type=int, default=20000, help="Most characters per text (more: HTTP 413).")
    serve.add_argument("--request-timeout", type=float, default=30.0,
                       help="Seconds a client has to send a whole request; slower clients are cut off (late body: 408).")
    serve.add_argument("--max-connections", type=int, default=64,
                       help="Most connections served at once, one worker thread each; more wait in the backlog.")
    serve.add_argument("--backlog", type=int, default=128,
                       help="Connections the OS queues while every worker is busy (capped by net.core.somaxconn).")
    serve.add_argument("--policy-tokenizer", default=None,
                       help="Policy tokenizer folder: parse its chat markup in queries and apply the reward template.")
    _add_evaluate_parser(commands)
    _add_train_pairs_parser(commands)
    return parser


def _add_train_pairs_parser(commands) -> None:
    train = commands.add_parser(
        "train-pairs", help="Train a reward model on preference pairs (TRL RewardTrainer): a judge or a baseline.",
        description="Bradley-Terry reward model on chosen/rejected pairs, split by prompt; writes a silr reward model "
        "folder (safetensors, `silr` block, model card) and held_out_pairs.jsonl.")
    train.add_argument("--pairs", required=True, metavar="PATH",
                       help="HH-RLHF transcripts (chosen, rejected) or prompt/chosen/rejected rows (.jsonl/.csv[.gz]).")
    train.add_argument("--out", required=True, help="Folder to create (must not exist, or be empty).")
    train.add_argument("--overwrite", action="store_true", help="Replace --out if it is an earlier silr reward model.")
    train.add_argument("--model", default="minilm", help="Base model: an alias (minilm) or a local folder.")
    train.add_argument("--max-length", type=int, default=128, help="Tokens per prompt + answer text (default 128).")
    train.add_argument("--held-out-fraction", type=float, default=0.2,
                       help="Share of the prompts held out for evaluation (default 0.2; 0: none).")
    train.add_argument("--max-pairs", type=int, default=None, metavar="N", help="Seeded sample of at most N pairs.")
    train.add_argument("--column", action="append", default=[], type=_column_rename, metavar="ROLE=NAME",
                       help="Read ROLE (prompt, chosen, rejected) from column NAME; repeatable.")
    train.add_argument("--epochs", type=float, default=2.0, help="Passes over the training pairs (default 2).")
    train.add_argument("--learning-rate", type=float, default=5e-5, help="AdamW learning rate (default 5e-5).")
    train.add_argument("--batch-size", type=int, default=16, help="Pairs per step (default 16).")
    train.add_argument("--bf16", action="store_true", help="bf16 autocast (GPU, or a CPU with AVX512-BF16).")
    train.add_argument("--gradient-checkpointing", action="store_true",
                       help="Recompute activations in the backward pass: less memory, ~30%% more compute.")
    train.add_argument("--seed", type=int, default=0, help="Seed of the split, the sample and training (default 0).")
    train.add_argument("--trust-remote-code", action="store_true", help="Run the base model's own code (off).")


def run_train_pairs(args: argparse.Namespace) -> str:
    from reward.config import PairTrainingConfig
    from reward.pairs_training import HELD_OUT_FILE, train_pairs_reward

    config = PairTrainingConfig(
        pairs=args.pairs, model_name_or_path=args.model, max_length=args.max_length,
        held_out_fraction=args.held_out_fraction, max_pairs=args.max_pairs, columns=dict(args.column),
        num_train_epochs=args.epochs, learning_rate=args.learning_rate, per_device_train_batch_size=args.batch_size,
        bf16=args.bf16, gradient_checkpointing=args.gradient_checkpointing, seed=args.seed, trust_remote_code=args.trust_remote_code)
    summary = train_pairs_reward(config, args.out, overwrite=args.overwrite)
    held = summary.get("held_out_accuracy")
    return (f"reward model: {args.out} ({summary['train_pairs']} training pairs, accuracy {summary['train_accuracy']:.3f}; "
            + ("no held-out pairs" if held is None else
               f"{summary['held_out_pairs']} held-out pairs ({Path(args.out) / HELD_OUT_FILE}), accuracy {held:.3f}")
            + f"; threshold {summary['threshold']:.3f}; {summary['seconds']:.0f} s)")


def _add_evaluate_parser(commands) -> None:
    evaluate = commands.add_parser(
        "evaluate", help="Evaluate a reward model on preference pairs, labelled answers and refusal sets.",
        description="RewardBench-style evaluation; pass at least one input. Writes evaluation.json and evaluation.md "
        "to --out.",
    )
    _add_model_arguments(evaluate, normalize=False)
    evaluate.add_argument("--higher-is-safer", type=_true_or_false, default=None, metavar="true|false",
                          help="For a classifier without silr metadata: true if its logit rises with safety, false if "
                          "it rises with harm.")
    evaluate.add_argument("--out", required=True, help="Folder for evaluation.json and evaluation.md.")
    evaluate.add_argument("--overwrite", action="store_true", help="Replace evaluation.json/.md already in --out.")
    evaluate.add_argument("--card", action="store_true",
                          help="Also write the tables into the model folder's README.md (its `## Evaluation` section).")
    inputs = evaluate.add_argument_group("inputs (each repeatable)")
    inputs.add_argument("--pairs", action="append", default=[], metavar="PATH",
                        help="Preference pairs: HH-RLHF transcripts (chosen, rejected) or prompt/chosen/rejected rows "
                        "(.jsonl, .csv, optionally .gz).")
    inputs.add_argument("--answers", action="append", default=[], metavar="PATH",
                        help="Labelled answers: prompt, response, label (1/unsafe or 0/safe); .jsonl or .csv.")
    inputs.add_argument("--xstest", action="append", default=[], metavar="DIR",
                        help="The XSTest folder (../shared/data/xstest): refusal metrics against the human gold.")
    inputs.add_argument("--refusals", action="append", default=[], metavar="PATH",
                        help="XSTest-style rows: prompt, response, prompt_label (safe/unsafe), refusal (true/false).")
    inputs.add_argument("--refine-run", action="append", default=[], metavar="RUN",
                        help="A refine run directory: its gold test split (rebuilt from RUN/config.yaml).")
    options = evaluate.add_argument_group("columns, samples and bootstrap")
    options.add_argument("--column", action="append", default=[], type=_column_rename, metavar="ROLE=NAME",
                         help="Read ROLE from column NAME (roles: prompt, response, label, chosen, rejected, "
                         "prompt_label, refusal); repeatable.")
    options.add_argument("--max-pairs", type=int, default=None, metavar="N",
                         help="Seeded sample of at most N pairs per --pairs.")
    options.add_argument("--max-rows", type=int, default=None, metavar="N",
                         help="Seeded sample of at most N rows per --answers, --refusals, --xstest or --refine-run.")
    options.add_argument("--confidence", type=float, default=0.9, help="Coverage of the bootstrap intervals (default 0.9).")
    options.add_argument("--resamples", type=int, default=1000, help="Bootstrap resamples per interval (default 1000).")
    options.add_argument("--seed", type=int, default=0, help="Seed of the samples and the bootstrap (default 0).")


def _true_or_false(text: str) -> bool:
    if text.lower() in ("true", "false"):
        return text.lower() == "true"
    raise argparse.ArgumentTypeError(f"expected true or false, got {text!r}")


def _column_rename(text: str) -> tuple[str, str]:
    from reward.evaluation_data import DEFAULT_COLUMNS

    role, sep, name = text.partition("=")
    if not sep or not name or role not in DEFAULT_COLUMNS:
        raise argparse.ArgumentTypeError(f"expected ROLE=NAME with ROLE one of {', '.join(DEFAULT_COLUMNS)}, got "
                                         f"{text!r}")
    return role, name


def _add_model_arguments(parser: argparse.ArgumentParser, *, normalize: bool = True) -> None:
    parser.add_argument("--model", required=True, help="Reward model folder (from `python -m reward export`).")
    if normalize:
        parser.add_argument("--normalize", action="store_true",
                            help="z-normalise rewards with the calibration mean and std stored at export.")
    parser.add_argument("--batch-size", type=int, default=32, help="Texts per forward pass.")
    parser.add_argument("--device", default=None, help="cpu, cuda, cuda:1, ... (default: cuda if available).")


def run_score(args: argparse.Namespace) -> str:
    from refine.rundir import atomic_path, read_jsonl
    from reward.evaluation_data import text_column

    paired = args.prompt_column is not None or args.response_column is not None
    if paired and (args.prompt_column is None or args.response_column is None or args.text_column is not None):
        raise ValueError("pass --prompt-column with --response-column (and no --text-column), or --text-column alone.")
    output = Path(args.output)
    if output.exists() and not args.overwrite:
        raise ValueError(f"{output} exists; pass --overwrite to replace it, or choose another --output.")
    source = Path(args.input)
    rows = read_jsonl(source, flag="--input")
    if paired:
        prompts = text_column(rows, args.prompt_column, source, "set --prompt-column")
        responses = text_column(rows, args.response_column, source, "set --response-column")
    else:
        texts = text_column(rows, args.text_column or "text", source, "set --text-column")
    model = _load_model(args)
    rewards = model.score_pairs(prompts, responses, progress=True) if paired else model.score(texts, progress=True)
    with atomic_path(output) as tmp, tmp.open("w", encoding="utf-8") as handle:
        for row, value in zip(rows, rewards, strict=True):
            handle.write(json.dumps({**row, args.reward_column: float(value)}, ensure_ascii=False) + "\n")
    return f"scored {len(rows)} rows → {output} (column `{args.reward_column}`, higher = safer" + (
        ", z-normalised)" if args.normalize else ")")


def _load_model(args: argparse.Namespace):
    from reward.model import RewardModel

    return RewardModel.from_pretrained(args.model, normalize=args.normalize, batch_size=args.batch_size,
                                       device=args.device)


EVALUATION_FILES = ("evaluation.json", "evaluation.md")


def _load_suites(args: argparse.Namespace) -> list:
    from reward import evaluation_data as data

    columns = dict(args.column)
    sample = {"max_rows": args.max_rows, "seed": args.seed}
    return ([data.load_pairs(p, columns=columns, max_pairs=args.max_pairs, seed=args.seed) for p in args.pairs]
            + [data.load_answers(p, columns=columns, **sample) for p in args.answers]
            + [data.load_xstest(p, **sample) for p in args.xstest]
            + [data.load_refusals(p, columns=columns, **sample) for p in args.refusals]
            + [data.load_refine_run(p, **sample) for p in args.refine_run])


def _summary_line(suite: dict) -> str:
    m = suite["metrics"]
    if suite["kind"] == "pairs":
        low, high = m["accuracy_ci"]
        return f"pairs    {suite['name']}: accuracy {m['accuracy']:.3f} [{low:.3f}, {high:.3f}] (n={m['n']})"
    answers = m if suite["kind"] == "answers" else m["answers"]
    auc = "-" if answers["roc_auc"] is None else f"{answers['roc_auc']:.3f}"
    accuracy = "-" if answers["accuracy"] is None else f"{answers['accuracy']:.3f}"
    line = f"{suite['kind']:<8} {suite['name']}: unsafe ROC-AUC {auc}, accuracy {accuracy} (n={answers['n']})"
    if suite["kind"] == "refusals":
        unsafe, safe = (m[k]["refusal_auc"] for k in ("unsafe_prompts", "safe_prompts"))
        line += (f"; refusal AUC on unsafe prompts {'-' if unsafe is None else f'{unsafe:.3f}'} (higher is better), "
                 f"on safe prompts {'-' if safe is None else f'{safe:.3f}'} (lower is better)")
    return line


def run_evaluate(args: argparse.Namespace) -> str:
    """`reward evaluate`: every input is read and checked, then the model loaded, before anything is written."""
    import time

    from refine.rundir import atomic_path
    from reward.evaluate import evaluate_reward_model, evaluation_markdown, with_evaluation_section
    from reward.model import RewardModel

    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise ValueError(f"--out {out} is a file; pass a folder.")
    existing = [name for name in EVALUATION_FILES if (out / name).exists()]
    if existing and not args.overwrite:
        raise ValueError(f"{out} already holds {', '.join(existing)}; pass --overwrite to replace them, or choose "
                         "another --out.")
    for name, value in (("--max-pairs", args.max_pairs), ("--max-rows", args.max_rows), ("--resamples", args.resamples)):
        if value is not None and value < 1:
            raise ValueError(f"{name}={value} must be positive.")
    if not 0.0 < args.confidence < 1.0:
        raise ValueError(f"--confidence={args.confidence} must lie in (0, 1), e.g. 0.9.")
    inputs = {"pairs": args.pairs, "answers": args.answers, "xstest": args.xstest, "refusals": args.refusals,
              "refine_run": args.refine_run}
    if not any(inputs.values()):
        raise ValueError("no evaluation data; pass at least one of --pairs, --answers, --xstest, --refusals, "
                         "--refine-run.")
    card = Path(args.model) / "README.md"
    if args.card and Path(args.model).is_dir() and not os.access(args.model, os.W_OK):
        raise ValueError(f"--card cannot write {card}: the model folder is not writable; drop --card.")
    started = time.perf_counter()
    suites = _load_suites(args)
    loaded = time.perf_counter()
    model = RewardModel.from_pretrained(args.model, batch_size=args.batch_size, device=args.device,
                                        higher_is_safer=args.higher_is_safer)
    model_loaded = time.perf_counter()
    results = evaluate_reward_model(model, suites, confidence=args.confidence, resamples=args.resamples,
                                    seed=args.seed, progress=True)
    results["model"]["path"] = str(args.model)
    results["inputs"] = {**inputs, "columns": dict(args.column), "max_pairs": args.max_pairs,
                         "max_rows": args.max_rows, "seed": args.seed}
    results["timings"] = {"read_inputs_s": round(loaded - started, 3), "load_model_s": round(model_loaded - loaded, 3),
                          "score_and_metrics_s": results.pop("seconds"),
                          "total_s": round(time.perf_counter() - started, 3)}
    markdown = evaluation_markdown(results)
    payload = json.dumps(results, indent=2, sort_keys=True, ensure_ascii=False) + "\n"
    with atomic_path(out / "evaluation.json") as json_tmp, atomic_path(out / "evaluation.md") as md_tmp:
        json_tmp.write_text(payload, encoding="utf-8")
        md_tmp.write_text(markdown, encoding="utf-8")  # both renamed only when both are written
    lines = [_summary_line(suite) for suite in results["suites"]]
    if args.card:
        previous = card.read_text(encoding="utf-8") if card.is_file() else ""
        with atomic_path(card) as card_tmp:
            card_tmp.write_text(with_evaluation_section(previous, evaluation_markdown(results, level=2)),
                                encoding="utf-8")
        lines.append(f"model card: {card} (## Evaluation)")
    return "\n".join(lines + [f"evaluation: {out / 'evaluation.json'}, {out / 'evaluation.md'}"])


def run_serve(args: argparse.Namespace) -> None:
    from reward.config import ServerConfig
    from reward.server import make_server

    limits = ServerConfig(max_batch=args.max_batch, max_chars=args.max_chars, request_timeout=args.request_timeout,
                          max_connections=args.max_connections, backlog=args.backlog)
    model = _load_model(args)
    extractor = None
    if args.policy_tokenizer:
        from transformers import AutoTokenizer

        from reward.chat_text import ChatTextExtractor

        extractor = ChatTextExtractor(AutoTokenizer.from_pretrained(args.policy_tokenizer), model.metadata.template)
    server = make_server(model, host=args.host, port=args.port, limits=limits, extractor=extractor)
    host, port = server.server_address[:2]
    print(f"serving rewards on http://{host}:{port}/get_reward (health: /health); Ctrl-C to stop", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()


def run_command(args: argparse.Namespace) -> str | None:
    """Run the parsed command; returns the text to print (None for serve, which prints its own address)."""
    from transformers.utils import logging as transformers_logging

    transformers_logging.disable_progress_bar()  # weight loading/saving bars; stderr keeps silr's bar and errors
    if args.command == "export":
        from reward.export import export_reward_model

        out = export_reward_model(args.run, args.out or Path(args.run) / "reward", iteration=args.iteration,
                                  overwrite=args.overwrite, trust_remote_code=args.trust_remote_code)
        return f"reward model: {out} (config.json `silr` block; README.md model card)"
    if args.command == "score":
        return run_score(args)
    if args.command == "evaluate":
        return run_evaluate(args)
    if args.command == "train-pairs":
        return run_train_pairs(args)
    run_serve(args)
    return None


def main(argv: list[str] | None = None) -> int:
    parser = make_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        return usage_error(parser, "choose a command: export, score, serve, evaluate or train-pairs (see --help)")
    from refine.distributed import launched_rank, multi_process_refusal

    refusal = multi_process_refusal("reward", args.command)
    if refusal:
        if launched_rank() == 0:
            print(refusal, file=sys.stderr)
        return EXIT_USAGE
    return run_cli(lambda: run_command(args))


if __name__ == "__main__":
    sys.exit(main())
