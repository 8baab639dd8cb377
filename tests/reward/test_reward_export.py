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


def test_threshold_reproduces_refine_labels(tiny_run, reward_model):
    """The exported folder, loaded and scored, calls unsafe exactly the texts refine labelled unsafe (reward below the
    stored threshold), for every text whose reward is not within float noise of the threshold."""
    labels = pd.read_parquet(tiny_run.root / "refine" / "iter_1" / "labels.parquet")["pseudo_label"].to_numpy()
    rewards = reward_model.score(tiny_run.texts)
    threshold = reward_model.metadata.threshold
    assert threshold == pytest.approx(-0.1)  # refine's unsafe_logit threshold 0.1, negated
    clear = np.abs(rewards - threshold) > SCORE_TOLERANCE
    assert clear.sum() >= len(labels) - 2 and 0 < labels.sum() < len(labels)  # both classes, few borderline texts
    np.testing.assert_array_equal((rewards[clear] < threshold).astype(int), labels[clear])


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


REMOTE_CODE = '''"""Custom modeling code that leaves a marker the moment it is imported."""
from pathlib import Path

Path({marker!r}).write_text("remote code ran")

from transformers import PretrainedConfig


class MarkerConfig(PretrainedConfig):
    model_type = "silr-marker"
'''


def remote_code_model(folder: Path, marker: Path) -> Path:
    """A model folder whose config.json sends every Auto class to custom code that writes ``marker`` on import."""
    folder.mkdir(parents=True)
    (folder / "marker_code.py").write_text(REMOTE_CODE.format(marker=str(marker)))
    auto_map = {"AutoConfig": "marker_code.MarkerConfig",
                "AutoModelForSequenceClassification": "marker_code.MarkerModel",
                "AutoTokenizer": ["marker_code.MarkerTokenizer", None]}
    (folder / "config.json").write_text(json.dumps({"model_type": "silr-marker", "auto_map": auto_map}))
    return folder


def run_asking_for_remote_code(tiny_run, tmp_path: Path, layout: str) -> tuple[Path, Path]:
    """A copy of the tiny run whose iteration 1 says trust_remote_code: true and points at code that marks a file.

    ``head``: classifier.json's base model is the folder with the code; ``model``: the classifier folder holds it.
    """
    import shutil

    run, marker = tmp_path / "run", tmp_path / "marker.txt"
    shutil.copytree(tiny_run.root, run)
    classifier = run / "refine" / "iter_1" / "classifier"
    meta = json.loads((classifier / "classifier.json").read_text())
    if layout == "head":
        meta["model_name_or_path"] = str(remote_code_model(tmp_path / "custom_model", marker))
    else:
        shutil.rmtree(classifier)
        remote_code_model(classifier, marker)
        (classifier / "model.safetensors").write_bytes(b"")
        meta["format"] = "model"
    (classifier / "classifier.json").write_text(json.dumps({**meta, "trust_remote_code": True}))
    return run, marker


@pytest.mark.parametrize("layout", ["head", "model"])
def test_a_run_folder_never_turns_remote_code_on(tiny_run, tmp_path, layout, capsys):
    """classifier.json is data: its trust_remote_code alone must not make `reward export` import a model's code."""
    from reward.cli import main

    run, marker = run_asking_for_remote_code(tiny_run, tmp_path, layout)
    with pytest.raises(ValueError, match=r"trained with trust_remote_code, so loading it runs the Python code in "
                                         r".*pass --trust-remote-code"):
        export_reward_model(run, tmp_path / "reward", iteration=1)
    assert main(["export", "--run", str(run), "--iteration", "1", "--out", str(tmp_path / "reward")]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "--trust-remote-code" in err and err.count("\n") == 1
    assert not marker.exists(), "remote code ran without --trust-remote-code"
    assert not (tmp_path / "reward").exists()


def test_remote_code_runs_only_with_the_flag(tiny_run, tmp_path):
    """The same run with --trust-remote-code does import the code (so the test above proves something). A separate
    process with its own modules cache, so the code is never imported into the test process or the user's cache."""
    import os
    import subprocess
    import sys

    run, marker = run_asking_for_remote_code(tiny_run, tmp_path, "head")
    env = {**os.environ, "HF_MODULES_CACHE": str(tmp_path / "modules"), "HF_HUB_OFFLINE": "1"}
    result = subprocess.run(
        [sys.executable, "-m", "reward", "export", "--run", str(run), "--iteration", "1", "--out",
         str(tmp_path / "reward"), "--trust-remote-code"],
        capture_output=True, text=True, env=env, cwd=Path(__file__).parents[2], timeout=300,
    )
    assert marker.read_text() == "remote code ran", result.stderr[-2000:]
    assert result.returncode == 1  # the marker module has no model class: a one-line error after it ran
    assert result.stderr.strip().splitlines()[-1].startswith("error: ")


def test_export_removes_what_a_killed_export_left(tiny_run, tmp_path):
    """kill -9 mid-export leaves `.<out>.<hex>.tmp` (up to the size of the model); the next export of that --out
    removes it. Only silr's own temporaries of that folder go: other hidden entries, and a live writer's, stay."""
    import os
    import subprocess
    import sys

    from refine.rundir import _temporary_name

    out = tmp_path / "reward"
    old_style = tmp_path / ".reward.0123456789ab.tmp"  # the 12-hex-digit names of earlier versions
    (old_style / "sub").mkdir(parents=True)
    (old_style / "sub" / "model.safetensors").write_bytes(b"half a model")
    dead = subprocess.Popen([sys.executable, "-c", "import os; print(os.getpid())"], stdout=subprocess.PIPE, text=True)
    dead_pid = int(dead.communicate()[0])
    dead_writer = Path(str(_temporary_name(out)).replace(f"{os.getpid():08x}", f"{dead_pid:08x}"))
    dead_writer.mkdir()
    live = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        live_writer = Path(str(_temporary_name(out)).replace(f"{os.getpid():08x}", f"{live.pid:08x}"))
        live_writer.mkdir()
        others = [tmp_path / ".other.0123456789ab.tmp", tmp_path / ".reward.notes.tmp", tmp_path / "reward.0123.tmp"]
        for path in others:
            path.write_text("not an export of this --out")
        export_reward_model(tiny_run.root, out, iteration=1)
        left = sorted(p.name for p in tmp_path.iterdir())
        assert left == sorted(["reward", live_writer.name, *(p.name for p in others)])
    finally:
        live.kill()
        live.wait()


def test_exported_files_follow_the_umask(tiny_run, tmp_path):
    """safetensors writes 0o600; an export to a shared model folder must be readable like every other file."""
    import os

    previous = os.umask(0o022)
    try:
        out = export_reward_model(tiny_run.root, tmp_path / "reward", iteration=1)
    finally:
        os.umask(previous)
    modes = {p.name: p.stat().st_mode & 0o777 for p in out.iterdir()}
    assert modes["model.safetensors"] == 0o644 and set(modes.values()) == {0o644}, modes
    assert out.stat().st_mode & 0o777 == 0o755


def test_a_moved_base_model_names_the_folder_and_the_file_to_fix(tiny_run, tmp_path):
    import shutil

    run = tmp_path / "run"
    shutil.copytree(tiny_run.root, run)
    meta_path = run / "refine" / "iter_1" / "classifier" / "classifier.json"
    meta = json.loads(meta_path.read_text())
    meta_path.write_text(json.dumps({**meta, "model_name_or_path": str(tmp_path / "moved" / "bert")}))
    with pytest.raises(FileNotFoundError, match=r"model folder .*moved/bert does not exist; set model_name_or_path in "
                                                r".*iter_1/classifier/classifier\.json to an existing folder"):
        export_reward_model(run, tmp_path / "reward", iteration=1)
