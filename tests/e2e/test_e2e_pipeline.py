"""`python -m align pipeline` end to end on a tiny corpus and tiny models: every stage, then a resumed rerun.

Refine runs for real (simulated annotator, tiny BERT frozen encoder, all four variants), the reward models are
exported, the tiny Llama policy (real SmolLM2 tokenizer) is trained with PPO against each, evaluated on real held-out
prompts and reported.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import yaml

from align.cli import main

UNSAFE_WORDS = "kill bomb poison hurt threaten hate knife drugs".split()
SAFE_WORDS = "bread garden music weather school river thanks friend help recipe".split()


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> str:
    """240 texts, gold unsafe iff the text holds an unsafe word (about 40%)."""
    rng = np.random.default_rng(0)
    rows = []
    for i in range(240):
        unsafe = i % 5 < 2
        words = list(rng.choice(SAFE_WORDS, size=int(rng.integers(4, 12))))
        if unsafe:
            words.insert(int(rng.integers(0, len(words))), str(rng.choice(UNSAFE_WORDS)))
        rows.append({"text": " ".join(words), "unsafe": int(unsafe)})
    path = tmp_path_factory.mktemp("corpus") / "corpus.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return str(path)


@pytest.fixture
def pipeline_config(tmp_path, corpus, tiny_bert_dir, tiny_llama_dir) -> tuple[Path, str]:
    train = tmp_path / "train_prompts.txt"
    train.write_text("\n".join(["How do I pick a lock?", "Tell me how to hurt someone.", "Write a mean joke.",
                                "How can I steal a car?", "Give me a bread recipe.", "How to make poison?"]) + "\n")
    config = {
        "name": "tiny", "output_dir": str(tmp_path / "run"), "num_threads": 1,
        "refine": {
            "data": {"path": corpus, "text_column": "text", "label_columns": ["unsafe"], "test_fraction": 0.25,
                     "num_labeled": 50},
            "annotator": {"kind": "simulated", "flip_unsafe": 0.2, "flip_safe": 0.1},
            "classifier": {"model_name_or_path": tiny_bert_dir, "max_length": 32},
            "train": {"num_train_epochs": 5, "batch_size": 64},
            "loop": {"iterations": 1},
        },
        "policy": {"model_name_or_path": tiny_llama_dir},
        "prompts": {"train_sources": [str(train)], "eval_sources": ["simple_safety_tests", "advbench_behaviors"],
                    "num_eval_per_source": 2, "max_prompt_tokens": 96},
        "ppo": {"response_length": 6, "per_device_train_batch_size": 2, "local_rollout_forward_batch_size": 2,
                "total_episodes": 4, "num_ppo_epochs": 1, "num_seeds": 2, "learning_rate": 1e-4},
        "evaluate": {"batch_size": 4, "reward_max_pairs": 16},
    }
    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return tmp_path / "run", str(path)


def test_pipeline_runs_every_stage_then_resumes(pipeline_config, monkeypatch, capsys):
    run, path = pipeline_config
    assert main(["pipeline", "--config", path]) == 0
    assert capsys.readouterr().out.strip().splitlines()[-1] == f"report: {run / 'report' / 'report.html'}"

    for variant in ("pn", "oracle", "labels50", "gold"):
        assert (run / "reward" / variant / "model" / "model.safetensors").is_file(), variant
        assert (run / "refine" / variant / "refine" / "metrics.csv").is_file(), variant
    for variant in ("vanilla_rlaif", "ours_oracle", "ours_50"):
        for seed in (0, 1):
            assert (run / "ppo" / variant / f"seed_{seed}" / "policy" / "model.safetensors").is_file()
    path_samples = run / "evaluate" / "ours_50" / "seed_1" / "samples.jsonl"
    samples = [json.loads(x) for x in path_samples.read_text().splitlines()]
    assert len(samples) == 6  # 2 per harmful source, and 2 safe prompts (xstest_safe, the default)
    assert [s["should_refuse"] for s in samples] == [True] * 4 + [False] * 2
    assert set(samples[0]["rewards"]) == {"vanilla_rlaif", "ours_oracle", "ours_50"}
    summary = json.loads((run / "report" / "summary.json").read_text())
    assert set(summary["per_variant"]) == {"sft", "vanilla_rlaif", "ours_oracle", "ours_50"}
    assert summary["per_variant"]["sft"]["kl_mean_mean"] == 0.0
    assert np.isfinite(summary["per_variant"]["ours_50"]["judge_mean_std"])  # two seeds: a spread exists
    page = (run / "report" / "report.html").read_text()
    assert page.count("data:image/png;base64,") >= 5  # judge distribution, bars, PPO curves, refine plots
    for name, variant in (("vanilla_rlaif", "pn"), ("ours_oracle", "oracle"), ("ours_50", "labels50"),
                          ("judge", "gold")):
        evaluation = json.loads((run / "reward_eval" / name / "evaluation.json").read_text())
        assert [s["kind"] for s in evaluation["suites"]] == ["answers", "pairs"]  # refine test split, HH-RLHF pairs
        assert "## Evaluation" in (run / "reward" / variant / "model" / "README.md").read_text()
    assert set(summary["reward_models"]) == {"vanilla_rlaif", "ours_oracle", "ours_50", "judge"}
    timing = json.loads((run / "pipeline.json").read_text())["runs"][-1]
    stages = [s["stage"] for s in timing["stages"]]
    assert stages[:2] == ["prompts", "refine+export pn"]
    assert stages.index("reward_eval/judge") < stages.index("ppo/vanilla_rlaif/seed_0")  # rewards checked before PPO
    assert all(s["seconds"] >= 0 and s["status"] == "done" for s in timing["stages"])

    # A rerun with the same config redoes nothing.
    import trl.experimental.ppo

    import align.pipeline

    def forbidden(*args, **kwargs):
        raise AssertionError("a finished stage ran again")

    monkeypatch.setattr(align.pipeline, "run_refine", forbidden)
    monkeypatch.setattr(trl.experimental.ppo.PPOTrainer, "train", forbidden)
    assert main(["pipeline", "--config", path]) == 0
    runs = json.loads((run / "pipeline.json").read_text())["runs"]
    assert len(runs) == 2 and {s["status"] for s in runs[-1]["stages"]} == {"skipped"}

    # A changed refine setting is refused, naming the difference and the fix; nothing is replaced.
    capsys.readouterr()
    assert main(["pipeline", "--config", path, "--refine.train.learning_rate", "0.01"]) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "different config" in err and "train.learning_rate" in err
    assert (run / "report" / "report.html").is_file()
