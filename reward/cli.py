"""`python -m reward export|score|serve`: export a refine run as a reward model, score texts, serve rewards."""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from pathlib import Path

from refine.errors import one_line


def make_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m reward",
        description="Reward models from refined safety classifiers. Rewards are -unsafe_logit: higher means safer.",
    )
    commands = parser.add_subparsers(dest="command", metavar="{export,score,serve}")

    export = commands.add_parser("export", help="Export a refine run's classifier as a Hugging Face reward model.")
    export.add_argument("--run", required=True, help="Run directory made by `python -m refine` (runs/<name>).")
    export.add_argument("--iteration", default="best",
                        help="best (highest accuracy on the gold set L), last, or an iteration number k >= 1.")
    export.add_argument("--out", default=None,
                        help="Folder to create (must not exist, or be empty). Default: <run>/reward.")
    export.add_argument("--overwrite", action="store_true", help="Replace --out if it is an earlier silr export.")

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
    serve.add_argument("--policy-tokenizer", default=None,
                       help="Policy tokenizer folder: parse its chat markup in queries and apply the reward template.")
    return parser


def _add_model_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", required=True, help="Reward model folder (from `python -m reward export`).")
    parser.add_argument("--normalize", action="store_true",
                        help="z-normalise rewards with the calibration mean and std stored at export.")
    parser.add_argument("--batch-size", type=int, default=32, help="Texts per forward pass.")
    parser.add_argument("--device", default=None, help="cpu, cuda, cuda:1, ... (default: cuda if available).")


def setup_logging() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s", datefmt="%H:%M:%S")
    for noisy in ("httpx", "urllib3", "filelock", "fsspec"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def read_jsonl(path: Path) -> list[dict]:
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found; pass an existing JSONL file to --input.")
    rows = []
    with path.open(encoding="utf-8") as handle:
        for number, line in enumerate(handle, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as err:
                raise ValueError(f"{path}:{number} is not valid JSON ({err.msg}); fix that line.") from err
            if not isinstance(row, dict):
                raise ValueError(f"{path}:{number} is a JSON {type(row).__name__}, not an object; write one object per line.")
            rows.append(row)
    return rows


def _column(rows: list[dict], name: str, path: Path, flag: str) -> list[str]:
    values = []
    for number, row in enumerate(rows, 1):
        if name not in row:
            raise ValueError(f"column `{name}` not found in row {number} of {path} (found: {', '.join(row)}); set {flag}.")
        if not isinstance(row[name], str):
            raise ValueError(f"column `{name}` of row {number} in {path} is {type(row[name]).__name__}, not text.")
        values.append(row[name])
    return values


def run_score(args: argparse.Namespace) -> str:
    from refine.rundir import atomic_path

    paired = args.prompt_column is not None or args.response_column is not None
    if paired and (args.prompt_column is None or args.response_column is None or args.text_column is not None):
        raise ValueError("pass --prompt-column with --response-column (and no --text-column), or --text-column alone.")
    output = Path(args.output)
    if output.exists() and not args.overwrite:
        raise ValueError(f"{output} exists; pass --overwrite to replace it, or choose another --output.")
    source = Path(args.input)
    rows = read_jsonl(source)
    if paired:
        prompts = _column(rows, args.prompt_column, source, "--prompt-column")
        responses = _column(rows, args.response_column, source, "--response-column")
    else:
        texts = _column(rows, args.text_column or "text", source, "--text-column")
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


def run_serve(args: argparse.Namespace) -> None:
    from reward.config import ServerConfig
    from reward.server import make_server

    limits = ServerConfig(max_batch=args.max_batch, max_chars=args.max_chars)
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


def main(argv: list[str] | None = None) -> int:
    parser = make_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_usage(sys.stderr)
        print("error: choose a command: export, score or serve (see --help)", file=sys.stderr)
        return 2
    from refine.distributed import launched_rank, multi_process_refusal

    refusal = multi_process_refusal("reward", args.command)
    if refusal:
        if launched_rank() == 0:
            print(refusal, file=sys.stderr)
        return 2
    setup_logging()
    from transformers.utils import logging as transformers_logging

    transformers_logging.disable_progress_bar()  # weight loading/saving bars; stderr keeps silr's bar and errors
    try:
        if args.command == "export":
            from reward.export import export_reward_model

            out = export_reward_model(args.run, args.out or Path(args.run) / "reward", iteration=args.iteration,
                                      overwrite=args.overwrite)
            print(f"reward model: {out} (config.json `silr` block; README.md model card)")
        elif args.command == "score":
            print(run_score(args))
        else:
            run_serve(args)
    except (ValueError, OSError, KeyError) as err:
        if os.environ.get("SILR_DEBUG"):
            raise
        print(f"error: {one_line(err)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
