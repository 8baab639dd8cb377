"""`python -m reward export|score|serve` through reward.cli.main: exit codes, one-line errors, no leftovers."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from reward.cli import main, make_parser


def test_export_then_score_jsonl(tiny_run, tmp_path, capsys, reward_model):
    run = tmp_path / "run"
    shutil.copytree(tiny_run.root, run)
    assert main(["export", "--run", str(run), "--iteration", "best"]) == 0
    out = run / "reward"  # the default --out: the run directory's reward stage
    assert f"reward model: {out}" in capsys.readouterr().out

    source = tmp_path / "in.jsonl"
    rows = [{"id": i, "prompt": "How do I bake bread?", "response": text} for i, text in enumerate(tiny_run.texts[:5])]
    source.write_text("".join(json.dumps(r) + "\n" for r in rows))
    target = tmp_path / "out.jsonl"
    code = main(["score", "--model", str(out), "--input", str(source), "--output", str(target),
                 "--prompt-column", "prompt", "--response-column", "response", "--normalize"])
    assert code == 0
    scored = [json.loads(line) for line in target.read_text().splitlines()]
    assert [r["id"] for r in scored] == list(range(5))
    calibration = reward_model.metadata.calibration
    expected = (reward_model.score_pairs([r["prompt"] for r in rows], [r["response"] for r in rows])
                - calibration.mean) / calibration.std
    np.testing.assert_allclose([r["reward"] for r in scored], expected, atol=1e-4)


def test_score_plain_text_column(exported_dir, tiny_run, tmp_path, reward_model):
    source = tmp_path / "in.jsonl"
    source.write_text("".join(json.dumps({"text": t}) + "\n" for t in tiny_run.texts[:4]))
    target = tmp_path / "out.jsonl"
    assert main(["score", "--model", exported_dir, "--input", str(source), "--output", str(target)]) == 0
    rewards = [json.loads(line)["reward"] for line in target.read_text().splitlines()]
    np.testing.assert_allclose(rewards, reward_model.score(tiny_run.texts[:4]), atol=1e-4)


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["export", "--run", "{run}", "--iteration", "9", "--out", "{tmp}/r"], "iteration 9 not found"),
        (["export", "--run", "{tmp}/nowhere", "--out", "{tmp}/r"], "not found; pass a run directory"),
        (["score", "--model", "{model}", "--input", "{tmp}/missing.jsonl", "--output", "{tmp}/o.jsonl"],
         "missing.jsonl not found"),
        (["score", "--model", "{model}", "--input", "{tmp}/in.jsonl", "--output", "{tmp}/o.jsonl",
          "--text-column", "body"], "column `body` not found in row 1"),
        (["score", "--model", "{tmp}", "--input", "{tmp}/in.jsonl", "--output", "{tmp}/o.jsonl"],
         "config.json not found"),
        (["score", "--model", "{model}", "--input", "{tmp}/in.jsonl", "--output", "{tmp}/o.jsonl",
          "--device", "gpu0"], "device='gpu0' is not a torch device"),
        pytest.param(["score", "--model", "{model}", "--input", "{tmp}/in.jsonl", "--output", "{tmp}/o.jsonl",
                      "--device", "cuda"], "no CUDA GPU is visible here",
                     marks=pytest.mark.skipif(torch.cuda.is_available(), reason="a GPU is visible")),
    ],
)
def test_errors_are_one_line_with_exit_1_and_no_output(argv, message, tiny_run, exported_dir, tmp_path, capsys):
    (tmp_path / "in.jsonl").write_text(json.dumps({"text": "hello"}) + "\n")
    argv = [a.format(run=tiny_run.root, tmp=tmp_path, model=exported_dir) for a in argv]
    before = sorted(p.name for p in tmp_path.iterdir())
    assert main(argv) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: ") and message in err and err.count("\n") == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == before


@pytest.mark.parametrize("command", ["export", "score", "serve"])
def test_a_multi_process_launch_is_refused(command, tmp_path, capsys, monkeypatch):
    """Every rank would export to the same folder, score into the same file, or bind the same port."""
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "0")
    argv = {"export": ["export", "--run", str(tmp_path / "run"), "--out", str(tmp_path / "out")],
            "score": ["score", "--model", str(tmp_path), "--input", str(tmp_path / "in.jsonl"),
                      "--output", str(tmp_path / "out.jsonl")],
            "serve": ["serve", "--model", str(tmp_path), "--port", "0"]}[command]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: `reward {command}` runs in one process") and err.count("\n") == 1
    assert list(tmp_path.iterdir()) == []


def test_serve_arguments_and_help_without_heavy_imports():
    args = make_parser().parse_args(["serve", "--model", "m", "--port", "0", "--max-batch", "4", "--max-chars", "10"])
    assert (args.port, args.max_batch, args.max_chars, args.host) == (0, 4, 10, "127.0.0.1")
    # In a fresh interpreter at the repository root: under pytest, `import reward` can resolve to tests/reward.
    code = (
        "import sys, reward, reward.cli; reward.cli.make_parser(); "
        "heavy = ('torch' in sys.modules, 'transformers' in sys.modules); "
        "from reward.model import RewardModel; print(*heavy, reward.RewardModel is RewardModel)"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                            cwd=Path(__file__).resolve().parents[2])
    assert result.stdout.split() == ["False", "False", "True"]  # --help is instant; the lazy export works


@pytest.mark.parametrize(("content", "message"), [
    (b'{"text": "caf\xe9"}\n', r"cannot read .*in\.jsonl \(UnicodeDecodeError\); pass a UTF-8 JSONL file"),
    (b'{"text": "fine"}\n{"text": "half a character \\udc80 here"}\n',
     r"column `text` of row 2 in .*in\.jsonl is not valid Unicode text \(it holds '\\udc80', a lone surrogate"),
])
def test_text_that_is_not_utf8_names_the_file(content, message, exported_dir, tmp_path, capsys):
    """Latin-1 bytes, or a JSON escape of a lone surrogate (valid JSON, but no tokenizer reads it): one line naming
    the file (and row), not a tokenizer traceback."""
    (tmp_path / "in.jsonl").write_bytes(content)
    out = tmp_path / "o.jsonl"
    assert main(["score", "--model", exported_dir, "--input", str(tmp_path / "in.jsonl"), "--output", str(out)]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1
    assert re.search(message, err), err
    assert not out.exists()
