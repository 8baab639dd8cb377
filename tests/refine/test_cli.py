"""`python -m refine`: bad input gives a one-line error, a non-zero exit, and no half-written output."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys

import pandas as pd
import pytest

from refine.cli import main
from tests.refine.conftest import make_corpus


def run_cli(args: list[str], capsys) -> tuple[int, str]:
    code = main(args)
    err = capsys.readouterr().err
    error_lines = [line for line in err.splitlines() if line.startswith("error:")]
    return code, error_lines


def assert_fails_cleanly(args, capsys, tmp_path, pattern: str) -> None:
    code, error_lines = run_cli(args, capsys)
    assert code == 1
    assert len(error_lines) == 1, error_lines
    assert re.search(pattern, error_lines[0]), error_lines[0]
    assert not (tmp_path / "run").exists(), "a failed fresh run must leave no output behind"


def with_corpus(refine_args, tmp_path, frame: pd.DataFrame, name: str = "bad.csv") -> list[str]:
    path = tmp_path / name
    frame.to_csv(path, index=False)
    return [*refine_args, "--data.path", str(path)]


def test_a_good_run_prints_the_table_and_exits_0(refine_args, capsys, tmp_path):
    assert main([*refine_args, "--loop.iterations", "1"]) == 0
    out = capsys.readouterr().out
    assert "test acc" in out and "logistic regression on L" in out and str(tmp_path / "run" / "refine") in out


def test_missing_file(refine_args, capsys, tmp_path):
    args = [*refine_args, "--data.path", str(tmp_path / "nope.csv")]
    assert_fails_cleanly(args, capsys, tmp_path, r"corpus file .*nope\.csv not found")


def test_missing_column(refine_args, capsys, tmp_path):
    assert_fails_cleanly([*refine_args, "--data.text_column", "tweet"], capsys, tmp_path,
                         r"column 'tweet' not found in .* \(found: text, label, llm\); set data\.text_column")


def test_empty_corpus(refine_args, capsys, tmp_path):
    (tmp_path / "empty.csv").write_text("text,label,llm\n")
    assert_fails_cleanly([*refine_args, "--data.path", str(tmp_path / "empty.csv")], capsys, tmp_path, r"empty")


def test_labels_that_are_not_binary(refine_args, capsys, tmp_path):
    frame = make_corpus()
    frame.loc[:4, "label"] = 7
    args = with_corpus(refine_args, tmp_path, frame) + ["--data.negative_values", "[0]"]
    assert_fails_cleanly(args, capsys, tmp_path, r"holds values \['7'\] that are in neither positive_values")


def test_labelled_set_larger_than_the_corpus(refine_args, capsys, tmp_path):
    assert_fails_cleanly([*refine_args, "--data.num_labeled", "1000"], capsys, tmp_path,
                         r"needs num_labeled=1000 gold-labelled training rows but only 180 exist")


def test_gold_labels_of_one_class(refine_args, capsys, tmp_path):
    frame = make_corpus().assign(label=0)
    assert_fails_cleanly(with_corpus(refine_args, tmp_path, frame), capsys, tmp_path, r"hold a single class")


def test_theta1_not_above_theta2(refine_args, capsys, tmp_path):
    args = [*refine_args, "--priors.pi", "0.3", "--priors.theta1", "0.2", "--priors.theta2", "0.3"]
    assert_fails_cleanly(args, capsys, tmp_path, r"theta1=0\.2 must be greater than theta2=0\.3")


def test_all_pseudo_labels_in_one_class(refine_args, capsys, tmp_path):
    frame = make_corpus().assign(llm=1)
    assert_fails_cleanly(with_corpus(refine_args, tmp_path, frame), capsys, tmp_path,
                         r"labelled all \d+ training texts unsafe")


def test_unknown_config_key(refine_args, capsys, tmp_path):
    assert_fails_cleanly([*refine_args, "--train.los", "pn"], capsys, tmp_path,
                         r"unknown key train\.los \(did you mean train\.loss\?\)")


@pytest.mark.parametrize(("override", "pattern"), [
    (["--classifier.max_length", "0"], r"max_length=0 must be at least 1"),
    (["--classifier.max_length", "-1"], r"max_length=-1 must be at least 1"),
    (["--classifier.encode_batch_size", "0"], r"encode_batch_size=0 must be at least 1"),
    (["--train.learning_rate", ".nan"], r"train.learning_rate must be a finite number, got nan"),
    (["--train.gamma", ".nan"], r"train.gamma must be a finite number"),
    (["--train.gamma", ".inf"], r"train.gamma must be a finite number"),
    (["--annotator.batch_size", "0"], r"annotator batch_size=0 must be at least 1"),
])
def test_sizes_and_numbers_that_mean_nothing_are_refused_before_any_work(refine_args, capsys, tmp_path, override,
                                                                         pattern):
    """They used to end in a traceback (max_length 0 / -1, encode_batch_size 0), or be accepted and fail at iteration
    1 leaving runs/<name> behind, after which the corrected rerun was refused as a changed config (nan)."""
    assert_fails_cleanly([*refine_args, *override], capsys, tmp_path, pattern)
    assert main([*refine_args, "--loop.iterations", "1"]) == 0  # the corrected run is a fresh one


def test_corrupt_feature_cache(refine_args, capsys, tmp_path):
    cache = tmp_path / "shared_cache"
    assert main([*refine_args, "--cache_dir", str(cache), "--loop.iterations", "1",
                 "--output_dir", str(tmp_path / "first")]) == 0
    (feature_file,) = cache.glob("features-*.safetensors")
    feature_file.write_bytes(b"not a safetensors file")
    assert_fails_cleanly([*refine_args, "--cache_dir", str(cache)], capsys, tmp_path,
                         r"feature cache .* is corrupt .*delete it and rerun")


def test_damaged_classifier_weights(refine_args, capsys, tmp_path, tiny_bert_dir):
    damaged = tmp_path / "bert"
    shutil.copytree(tiny_bert_dir, damaged)
    weights = damaged / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:-64])
    assert_fails_cleanly([*refine_args, "--classifier.model_name_or_path", str(damaged)], capsys, tmp_path,
                         r"cannot load the weights in .*bert \(SafetensorError: .*\); point classifier")


def test_corrupt_iteration_output(refine_args, capsys, tmp_path):
    assert main([*refine_args, "--loop.iterations", "1"]) == 0
    (tmp_path / "run" / "refine" / "iter_1" / "labels.parquet").write_bytes(b"garbage")
    code, error_lines = run_cli([*refine_args, "--loop.iterations", "1"], capsys)
    assert code == 1 and len(error_lines) == 1
    assert "iter_1/labels.parquet is corrupt" in error_lines[0]
    # The advice works: metrics.json marks the iteration finished, so the message names the folder to delete.
    assert "delete the folder" in error_lines[0] and error_lines[0].endswith("iter_1 and rerun (that iteration is recomputed).")
    finished = pd.read_parquet(tmp_path / "run" / "refine" / "iter_0" / "labels.parquet")
    shutil.rmtree(tmp_path / "run" / "refine" / "iter_1")
    assert main([*refine_args, "--loop.iterations", "1"]) == 0
    assert (tmp_path / "run" / "refine" / "iter_1" / "metrics.json").is_file()
    assert pd.read_parquet(tmp_path / "run" / "refine" / "iter_0" / "labels.parquet").equals(finished)


def test_help_lists_every_key_and_a_real_process_exits_non_zero(tmp_path):
    shown = subprocess.run([sys.executable, "-m", "refine", "--help"], capture_output=True, text=True, timeout=120)
    assert shown.returncode == 0 and "--train.gamma" in shown.stdout and "--data.num_labeled" in shown.stdout
    assert "~30% slower" in shown.stdout and "%%" not in shown.stdout  # help strings are printed, not argparse-formatted
    failed = subprocess.run([sys.executable, "-m", "refine", "--data.path", str(tmp_path / "x.csv"),
                             "--output_dir", str(tmp_path / "run")], capture_output=True, text=True, timeout=300)
    assert failed.returncode == 1
    assert failed.stderr.strip().splitlines()[-1].startswith("error: corpus file")
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize(("setting", "extra"), [
    ("classifier.model_name_or_path", []),
    # The finetune backbone loads its model only after annotation; the check comes before any request is sent
    # (this server's port is closed, so annotating first would fail on the connection instead).
    ("classifier.model_name_or_path", ["--classifier.backbone", "finetune", "--annotator.kind", "openai",
                                       "--annotator.base_url", "http://127.0.0.1:9/v1",
                                       "--annotator.model_name_or_path", "served-name"]),
    ("annotator.model_name_or_path", ["--annotator.kind", "hf"]),
])
def test_a_missing_model_folder_is_named_with_the_setting_to_fix(refine_args, capsys, tmp_path, setting, extra):
    """Not transformers' "Repo id must use alphanumeric chars": a path that cannot be a Hub id is a missing folder."""
    missing = "./models/not-there" if setting.startswith("annotator") else str(tmp_path / "models" / "minilm")
    args = [*refine_args, *extra, f"--{setting}", missing]
    assert_fails_cleanly(args, capsys, tmp_path, rf"model folder {re.escape(missing)} does not exist; set "
                                                 rf"{re.escape(setting)} to an existing folder")


def test_a_rerun_removes_what_a_killed_run_left(refine_args, capsys, tmp_path):
    """kill -9 mid-write leaves hidden `.<name>.<hex>.tmp` files and folders; the next run removes them (only silr's
    temporaries, only in the run's own folders). And the run's weights and feature cache are not private files."""
    from tests.refine.test_rundir import dead_pid, temporary_of

    previous = os.umask(0o022)
    try:
        assert main([*refine_args, "--loop.iterations", "1"]) == 0
    finally:
        os.umask(previous)
    run, pid = tmp_path / "run", dead_pid()
    # Weights and caches follow the umask like every other file (safetensors alone would write 0o600).
    (features,) = run.glob("cache/features-*.safetensors")
    for weights in (features, run / "refine" / "iter_1" / "classifier" / "head.safetensors"):
        assert weights.stat().st_mode & 0o777 == 0o644, weights
    leftovers = [temporary_of(run / "refine" / "accuracy.png", pid), temporary_of(run / "config.yaml", pid),
                 run / "annotate" / ".labels.parquet.0123456789ab.tmp"]
    for path in leftovers:
        path.write_bytes(b"half written")
    killed_iteration = temporary_of(run / "refine" / "iter_2", pid)
    (killed_iteration / "classifier").mkdir(parents=True)
    (killed_iteration / "classifier" / "model.safetensors").write_bytes(b"88 MB in real life")
    kept = [run / "refine" / "notes.txt", run / ".hidden", run / "refine" / ".accuracy.png.draft.tmp"]
    for path in kept:
        path.write_text("the user's")
    removed = {p.relative_to(run) for p in [*leftovers, killed_iteration, *killed_iteration.rglob("*")]}
    before = {p.relative_to(run) for p in run.rglob("*")} - removed
    assert main([*refine_args, "--loop.iterations", "1"]) == 0
    assert {p.relative_to(run) for p in run.rglob("*")} == before
