"""reward.export: a refine run → a plain Hugging Face reward model whose logit is -unsafe_logit."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from reward.export import export_reward_model, resolve_iteration
from tests.helpers import plain_hf_logits

# Float32 encoders padded in different batches differ by ~1e-6; 1e-4 is the acceptance bound.
SCORE_TOLERANCE = 1e-4



def test_exported_logits_are_minus_silr_unsafe_logits(tiny_run, exported_dir):
    # 200 texts, some longer than max_length=64 tokens: plain transformers, no silr code, reads the reward directly.
    logits = plain_hf_logits(exported_dir, tiny_run.texts, max_length=64, batch_size=50)
    expected = -tiny_run.unsafe_logits[1]
    assert np.abs(logits - expected).max() < SCORE_TOLERANCE
    assert expected.std() > 0.5  # rewards spread over real units, so the comparison is not trivially small


def test_folder_is_standard_safetensors_reward_model(exported_dir):
    from transformers import AutoConfig, AutoTokenizer

    files = {p.name for p in Path(exported_dir).iterdir()}
    assert "model.safetensors" in files and "README.md" in files and "config.json" in files
    assert not any(name.endswith((".bin", ".pt", ".pth")) for name in files)
    assert not any(name.startswith(".") for name in files)  # no temporary leftovers
    config = AutoConfig.from_pretrained(exported_dir)
    assert config.num_labels == 1 and config.id2label == {0: "safe"} and config.problem_type == "regression"
    tokenizer = AutoTokenizer.from_pretrained(exported_dir)
    assert config.pad_token_id == tokenizer.pad_token_id is not None
    assert tokenizer.model_max_length == 64 and tokenizer.truncation_side == "right"
    silr = config.silr
    assert silr["score"] == "reward" and silr["higher_is_safer"] is True
    assert silr["threshold"] == pytest.approx(-0.1)  # unsafe iff reward < -threshold of refine
    assert silr["max_length"] == 64 and silr["truncation_side"] == "right"
    assert silr["template"] == "User: {prompt}\nAssistant: {response}"
    assert silr["source"]["iteration"] == 1 and silr["source"]["family"] == "bert"


def test_decoder_classifier_export_negates_score_layer(tmp_path, tiny_llama_dir, make_tiny_run):
    # A Llama classifier (head family `score`, a linear layer without bias) read at the last non-pad token.
    run = make_tiny_run(tmp_path / "run", tiny_llama_dir, n_texts=40)
    export_reward_model(run.root, tmp_path / "reward", iteration="last")
    logits = plain_hf_logits(str(tmp_path / "reward"), run.texts, max_length=64, batch_size=50)
    assert np.abs(logits + run.unsafe_logits[2]).max() < SCORE_TOLERANCE
    assert run.unsafe_logits[2].std() > 0.5


def test_calibration_is_reward_statistics_of_training_split(tiny_run, exported_dir):
    labels = pd.read_parquet(tiny_run.root / "refine" / "iter_1" / "labels.parquet")
    rewards = -labels.loc[labels["split"] == "train", "score"].to_numpy(np.float64)
    calibration = json.loads((Path(exported_dir) / "config.json").read_text())["silr"]["calibration"]
    assert calibration["n"] == 140
    assert calibration["mean"] == pytest.approx(rewards.mean(), abs=1e-9)
    assert calibration["std"] == pytest.approx(rewards.std(), abs=1e-9)


def test_threshold_reproduces_refine_labels(tiny_run, exported_dir):
    config = json.loads((Path(exported_dir) / "config.json").read_text())["silr"]
    labels = pd.read_parquet(tiny_run.root / "refine" / "iter_1" / "labels.parquet")["pseudo_label"].to_numpy()
    reward = -tiny_run.unsafe_logits[1]
    np.testing.assert_array_equal((reward < config["threshold"]).astype(int), labels)


def test_pipeline_returns_raw_reward(tiny_run, exported_dir):
    from transformers import pipeline

    classify = pipeline("text-classification", model=exported_dir, device="cpu")
    out = classify(tiny_run.texts[:3], truncation=True)
    assert [o["label"] for o in out] == ["safe"] * 3
    np.testing.assert_allclose([o["score"] for o in out], -tiny_run.unsafe_logits[1][:3], atol=SCORE_TOLERANCE)


def test_model_card_describes_training_and_limits(exported_dir):
    card = (Path(exported_dir) / "README.md").read_text()
    for expected in ("higher means safer", "hf (model: `smollm2`)", "method `consistent`", "robust_uu",
                     "labeled_weight 0.5", "| iter |", "logistic regression on L", "weak labels",
                     "not a general content-moderation system", "reward < -0.1000"):
        assert expected in card, expected


def test_iteration_selection(tiny_run):
    assert resolve_iteration(tiny_run.root, "best") == 1
    assert resolve_iteration(tiny_run.root, "last") == 2
    assert resolve_iteration(tiny_run.root, "2") == 2
    with pytest.raises(ValueError, match=r"iteration 7 not found .*available: 1, 2"):
        resolve_iteration(tiny_run.root, 7)
    with pytest.raises(ValueError, match="iteration 0 holds the annotator's labels"):
        resolve_iteration(tiny_run.root, 0)
    with pytest.raises(ValueError, match="must be best, last or a number"):
        resolve_iteration(tiny_run.root, "first")
    with pytest.raises(FileNotFoundError, match="not found; pass a run directory"):
        resolve_iteration(tiny_run.root / "missing", "best")


def test_last_is_the_finished_runs_last_iteration(tiny_run, tmp_path):
    """A rerun with fewer loop.iterations leaves the older iter_2 behind; `last` follows summary.json."""
    import shutil

    run = tmp_path / "run"
    shutil.copytree(tiny_run.root, run)
    summary_path = run / "refine" / "summary.json"
    summary = json.loads(summary_path.read_text())
    summary_path.write_text(json.dumps({**summary, "iterations_run": 1}))
    assert resolve_iteration(run, "last") == 1
    summary_path.write_text(json.dumps({**summary, "best_iteration": None}))
    with pytest.raises(ValueError, match=r"summary\.json has no integer best_iteration \(found None\); delete it"):
        resolve_iteration(run, "best")
    summary_path.unlink()  # unfinished: the newest finished iteration
    assert resolve_iteration(run, "last") == 2


def test_last_iteration_export_and_overwrite_rules(tiny_run, tmp_path):
    out = tmp_path / "reward"
    export_reward_model(tiny_run.root, out, iteration="last")
    logits = plain_hf_logits(str(out), tiny_run.texts[:20], max_length=64, batch_size=50)
    assert np.abs(logits + tiny_run.unsafe_logits[2][:20]).max() < SCORE_TOLERANCE

    with pytest.raises(ValueError, match="exists and is not empty; pass --overwrite"):
        export_reward_model(tiny_run.root, out, iteration=1)
    export_reward_model(tiny_run.root, out, iteration=1, overwrite=True)
    assert json.loads((out / "config.json").read_text())["silr"]["source"]["iteration"] == 1

    foreign = tmp_path / "mine"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("keep me")
    with pytest.raises(ValueError, match="not a silr reward model folder"):
        export_reward_model(tiny_run.root, foreign, overwrite=True)
    assert (foreign / "notes.txt").read_text() == "keep me"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mine", "reward"]  # no temporary folders left
