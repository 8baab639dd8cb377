"""The three stage commands run alone, in order, on tiny models: ppo → evaluate → report, then reruns skip."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pandas as pd

from align.cli import main
from align.refusal import is_refusal


def test_ppo_evaluate_report_commands(make_config, capsys):
    config, path = make_config()
    run = Path(config["output_dir"])

    assert main(["ppo", "--config", path]) == 0
    folder = run / "ppo" / "ours_50" / "seed_0"
    assert (folder / "policy" / "model.safetensors").is_file()
    metrics = pd.read_csv(folder / "metrics.csv")
    assert {"objective/scores", "objective/kl"} <= set(metrics.columns)
    assert len(metrics) == 2  # total_episodes 4 / batch 2
    assert (folder / "metrics.png").stat().st_size > 1000
    split = json.loads((run / "prompts" / "split.json").read_text())
    # 4 harmful prompts (simple_safety_tests) and, by default, 4 safe ones (xstest_safe).
    assert split["num_eval"] == 8 and split["num_eval_safe"] == 4 and split["overlap_count"] == 0

    assert main(["evaluate", "--config", path]) == 0
    sft = run / "evaluate" / "sft" / "seed_0" / "samples.jsonl"
    rows = [json.loads(line) for line in sft.read_text().splitlines()]
    assert len(rows) == 8 and all(r["kl"] == 0.0 for r in rows)
    assert [r["should_refuse"] for r in rows] == [True] * 4 + [False] * 4
    assert all(r["refusal"] == is_refusal(r["response"]) for r in rows)
    summary = json.loads((sft.parent / "summary.json").read_text())
    assert summary["n_should_refuse"] == 4 and summary["n_safe"] == 4
    assert summary["over_refusal_fraction"] == sum(r["refusal"] for r in rows[4:]) / 4
    # The reward evaluations ran first: the training reward of ours_50 and the judge, on 16 HH-RLHF pairs.
    for name in ("ours_50", "judge"):
        evaluation = json.loads((run / "reward_eval" / name / "evaluation.json").read_text())
        assert [(s["kind"], s["metrics"]["n"]) for s in evaluation["suites"]] == [("pairs", 16)]
    trained = [json.loads(line) for line in
               (run / "evaluate" / "ours_50" / "seed_0" / "samples.jsonl").read_text().splitlines()]
    assert set(trained[0]["rewards"]) == {"ours_50"}
    assert trained[0]["own_reward"] == trained[0]["rewards"]["ours_50"]

    assert main(["report", "--config", path]) == 0
    report = run / "report"
    for name in ("report.html", "report.md", "summary.json", "judge_reward_distribution.png"):
        assert (report / name).is_file(), name
    out = capsys.readouterr().out
    assert "report.html" in out
    markdown = (report / "report.md").read_text()
    assert "| ours_50 (training reward) |" in markdown and "| judge (never used in training) |" in markdown

    # A damaged finished stage: the error names the folder to delete, and deleting it is enough.
    sft_folder = run / "evaluate" / "sft" / "seed_0"
    summary = json.loads((sft_folder / "summary.json").read_text())
    shutil.rmtree(report)  # a finished report is skipped; a new one reads every evaluation
    for damaged, detail in [("{cut", "is corrupt (JSONDecodeError)"),
                            (json.dumps({k: v for k, v in summary.items() if k != "judge_mean"}), "lacks judge_mean")]:
        (sft_folder / "summary.json").write_text(damaged)
        assert main(["report", "--config", path]) == 1
        error = capsys.readouterr().err.strip()
        assert len(error.splitlines()) == 1 and detail in error
        assert f"finished {sft_folder} is damaged" in error and "rerun `align evaluate`" in error
    shutil.rmtree(sft_folder)
    assert main(["evaluate", "--config", path]) == 0
    assert main(["report", "--config", path]) == 0

    # An empty PPO metrics.csv: named, with the folder to delete.
    ppo_folder = run / "ppo" / "ours_50" / "seed_0"
    (ppo_folder / "metrics.csv").write_text("")
    shutil.rmtree(report)
    capsys.readouterr()
    assert main(["report", "--config", path]) == 1
    error = capsys.readouterr().err.strip()
    assert len(error.splitlines()) == 1 and f"{ppo_folder / 'metrics.csv'} is damaged (No columns to parse" in error
    assert f"delete the folder {ppo_folder} and rerun `align ppo`" in error
