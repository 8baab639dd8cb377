"""Specs for ``refine.rundir``: atomic writes, stage fingerprints, and never touching a folder silr did not make."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from refine.rundir import (
    STAGE_FILE,
    RunConflictError,
    RunDir,
    _temporary_name,
    atomic_dir,
    atomic_path,
    describe_difference,
    fingerprint,
    read_json,
    read_jsonl,
    read_parquet,
    write_json,
    write_parquet,
    write_text,
    write_yaml,
)


class Interrupted(Exception):
    """Stands in for a crash (or Ctrl-C) in the middle of a write."""


@pytest.fixture
def umask():
    """The process umask (read by setting it and putting it back; the tests run in one thread)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def listing(folder) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


class TestAtomicPath:
    def test_the_file_appears_only_when_the_block_succeeds(self, tmp_path):
        target = tmp_path / "sub" / "metrics.json"
        with atomic_path(target) as tmp:
            assert tmp.parent == target.parent and tmp != target
            tmp.write_text("{}")
            assert not target.exists()  # still being written
        assert target.read_text() == "{}"
        assert listing(target.parent) == ["metrics.json"]  # no temporary file left behind

    def test_a_failed_block_leaves_no_file(self, tmp_path):
        target = tmp_path / "metrics.json"
        with pytest.raises(Interrupted), atomic_path(target) as tmp:
            tmp.write_text('{"half": ')
            raise Interrupted
        assert listing(tmp_path) == []

    def test_a_failed_block_keeps_the_old_file(self, tmp_path):
        target = tmp_path / "metrics.json"
        target.write_text("old")
        with pytest.raises(Interrupted), atomic_path(target) as tmp:
            tmp.write_text("new, half written")
            raise Interrupted
        assert target.read_text() == "old"
        assert listing(tmp_path) == ["metrics.json"]

    def test_the_file_gets_the_usual_permissions(self, tmp_path, umask):
        # 0o666 & ~umask, like any file the user writes (0o644 under the common umask 022); a private 0o600 would
        # hide a shared run's results from the rest of the team.
        write_text(tmp_path / "note.txt", "hello")
        assert (tmp_path / "note.txt").stat().st_mode & 0o777 == 0o666 & ~umask


class TestAtomicDir:
    def test_the_folder_appears_only_when_the_block_succeeds(self, tmp_path):
        target = tmp_path / "classifier"
        with atomic_dir(target) as tmp:
            (tmp / "head.safetensors").write_bytes(b"weights")
            (tmp / "classifier.json").write_text("{}")
            assert not target.exists()
        assert listing(target) == ["classifier.json", "head.safetensors"]
        assert listing(tmp_path) == ["classifier"]

    def test_a_failed_block_leaves_no_folder(self, tmp_path):
        with pytest.raises(Interrupted), atomic_dir(tmp_path / "classifier") as tmp:
            (tmp / "head.safetensors").write_bytes(b"half")
            raise Interrupted
        assert listing(tmp_path) == []

    def test_a_failed_block_keeps_the_old_folder(self, tmp_path):
        target = tmp_path / "classifier"
        with atomic_dir(target) as tmp:
            (tmp / "v1.txt").write_text("1")
        with pytest.raises(Interrupted), atomic_dir(target) as tmp:
            (tmp / "v2.txt").write_text("2")
            raise Interrupted
        assert listing(target) == ["v1.txt"]
        assert listing(tmp_path) == ["classifier"]

    def test_a_successful_block_replaces_the_old_folder(self, tmp_path):
        target = tmp_path / "classifier"
        with atomic_dir(target) as tmp:
            (tmp / "v1.txt").write_text("1")
        with atomic_dir(target) as tmp:
            (tmp / "v2.txt").write_text("2")
        assert listing(target) == ["v2.txt"]

    def test_the_folder_gets_the_usual_permissions(self, tmp_path, umask):
        with atomic_dir(tmp_path / "classifier"):
            pass
        assert (tmp_path / "classifier").stat().st_mode & 0o777 == 0o777 & ~umask


class TestReadWrite:
    def test_json_round_trip_keeps_numpy_integers_integral(self, tmp_path):
        path = tmp_path / "metrics.json"
        data = {"flips": np.int64(3), "theta1": np.float32(0.5), "stop": np.bool_(True), "ids": np.arange(3)}
        write_json(path, data)
        assert read_json(path) == {"flips": 3, "theta1": 0.5, "stop": True, "ids": [0, 1, 2]}
        assert path.read_text().endswith("}\n")

    def test_yaml_keeps_key_order(self, tmp_path):
        write_yaml(tmp_path / "config.yaml", {"name": "run", "data": {"seed": 0}, "a": 1})
        assert (tmp_path / "config.yaml").read_text() == "name: run\ndata:\n  seed: 0\na: 1\n"

    def test_parquet_round_trip(self, tmp_path):
        frame = pd.DataFrame({"id": [3, 1], "text": ["a", "b"], "labeled": [True, False]})
        write_parquet(tmp_path / "corpus.parquet", frame)
        pd.testing.assert_frame_equal(read_parquet(tmp_path / "corpus.parquet"), frame)

    def test_corrupt_json_names_the_file(self, tmp_path):
        path = tmp_path / "priors.json"
        path.write_text('{"pi": 0.3,')
        with pytest.raises(ValueError, match=r"priors\.json is corrupt \(JSONDecodeError\); delete it and rerun"):
            read_json(path)

    def test_json_that_is_not_text(self, tmp_path):
        path = tmp_path / "priors.json"
        path.write_bytes(b"\xff\xfe\x00garbage")
        with pytest.raises(ValueError, match=r"priors\.json is corrupt \(UnicodeDecodeError\)"):
            read_json(path)

    def test_corrupt_parquet_names_the_file(self, tmp_path):
        path = tmp_path / "labels.parquet"
        path.write_bytes(b"PAR1 this is not a parquet file")
        with pytest.raises(ValueError, match=r"labels\.parquet is corrupt \(\w+\); delete it and rerun"):
            read_parquet(path)

    def test_missing_parquet_is_not_called_corrupt(self, tmp_path):
        with pytest.raises(FileNotFoundError, match=r"labels\.parquet not found"):
            read_parquet(tmp_path / "labels.parquet")


class TestReadJsonl:
    """One reader for two kinds of file: a user's input (named by its option) and silr's own stage output."""

    def test_rows_of_a_plain_or_gzip_file_blank_lines_skipped(self, tmp_path):
        import gzip

        (tmp_path / "a.jsonl").write_text('{"x": 1}\n\n{"x": 2}\n')
        with gzip.open(tmp_path / "b.jsonl.gz", "wt", encoding="utf-8") as handle:
            handle.write('{"x": 3}\n')
        assert read_jsonl(tmp_path / "a.jsonl") == [{"x": 1}, {"x": 2}]
        assert read_jsonl(tmp_path / "b.jsonl.gz", flag="--input") == [{"x": 3}]

    @pytest.mark.parametrize(("content", "user", "stage"), [
        (b'{"x": 1}\n{"x": \n', r"in\.jsonl:2 is not valid JSON \(Expecting value\); fix that line\.",
         r"in\.jsonl is corrupt \(JSONDecodeError\)"),
        (b'{"x": 1}\n[1, 2]\n', r"in\.jsonl:2 is a JSON list, not an object; write one object per line\.",
         r"in\.jsonl is corrupt \(line 2 is a JSON list, not an object\)"),
        (b'{"x": "caf\xe9"}\n', r"cannot read .*in\.jsonl \(UnicodeDecodeError\); pass a UTF-8 JSONL file",
         r"in\.jsonl is corrupt \(UnicodeDecodeError\)"),
    ])
    def test_damage_names_the_line_in_input_and_the_folder_in_a_stage(self, tmp_path, content, user, stage):
        folder = tmp_path / "prompts"
        folder.mkdir()
        (folder / "in.jsonl").write_bytes(content)
        with pytest.raises(ValueError, match=user):
            read_jsonl(folder / "in.jsonl", flag="--input")
        with pytest.raises(ValueError, match=rf"finished {folder} is damaged \({stage}\); delete the folder {folder} "
                                             r"and rerun \(that stage is recomputed\)\."):
            read_jsonl(folder / "in.jsonl")

    def test_a_missing_file(self, tmp_path):
        with pytest.raises(FileNotFoundError, match=r"x\.jsonl not found; pass an existing JSONL file to --pairs\."):
            read_jsonl(tmp_path / "x.jsonl", flag="--pairs")
        with pytest.raises(FileNotFoundError):
            read_jsonl(tmp_path / "x.jsonl")


class TestFingerprint:
    def test_key_order_does_not_matter(self):
        assert fingerprint({"a": 1, "b": {"c": 2, "d": 3}}) == fingerprint({"b": {"d": 3, "c": 2}, "a": 1})

    def test_any_value_change_matters(self):
        assert fingerprint({"train": {"loss": "pn"}}) != fingerprint({"train": {"loss": "uu"}})
        assert len(fingerprint({})) == 16

    def test_describe_difference_flattens_and_limits(self):
        old = {"train": {"loss": "pn", "gamma": 0.0}, "seed": 0, "a": 1, "b": 2}
        new = {"train": {"loss": "robust_uu", "gamma": 0.0}, "seed": 1, "a": 2, "b": 3}
        # Sorted keys a, b, seed, train.loss; the first three shown.
        assert describe_difference(old, new) == "a: 1 → 2, b: 2 → 3, seed: 0 → 1 (+1 more)"
        assert describe_difference(old, new, limit=5).endswith("train.loss: 'pn' → 'robust_uu'")


class TestClaimStage:
    CONFIG = {"train": {"loss": "robust_uu", "gamma": -0.001}, "data": {"seed": 0}}

    def test_first_claim_records_the_config(self, tmp_path):
        folder = RunDir(tmp_path / "run").claim_stage("iter_1", self.CONFIG, overwrite=False)
        assert folder == tmp_path / "run" / "iter_1"
        assert read_json(folder / STAGE_FILE) == {"fingerprint": fingerprint(self.CONFIG), "config": self.CONFIG}

    def test_same_config_keeps_the_folder_and_its_results(self, tmp_path):
        run = RunDir(tmp_path / "run")
        folder = run.claim_stage("iter_1", self.CONFIG, overwrite=False)
        (folder / "labels.parquet").write_text("results")
        # A rerun resumes: nothing is deleted, with or without overwrite.
        assert run.claim_stage("iter_1", json.loads(json.dumps(self.CONFIG)), overwrite=False) == folder
        assert run.claim_stage("iter_1", self.CONFIG, overwrite=True) == folder
        assert (folder / "labels.parquet").read_text() == "results"
        assert run.check_stage("iter_1", self.CONFIG, overwrite=False) is True

    def test_changed_config_is_refused_naming_the_key(self, tmp_path):
        run = RunDir(tmp_path / "run")
        folder = run.claim_stage("iter_1", self.CONFIG, overwrite=False)
        (folder / "labels.parquet").write_text("results")
        changed = {**self.CONFIG, "train": {"loss": "pn", "gamma": -0.001}}
        with pytest.raises(RunConflictError, match=r"iter_1 holds results of a different config \(train\.loss: "
                                                   r"'robust_uu' → 'pn'\); use a new run name, or pass "
                                                   r"--overwrite_output_dir"):
            run.claim_stage("iter_1", changed, overwrite=False)
        assert (folder / "labels.parquet").read_text() == "results"  # refusing deletes nothing
        with pytest.raises(RunConflictError, match="train.loss"):
            run.check_stage("iter_1", changed, overwrite=False)

    def test_overwrite_replaces_a_silr_stage(self, tmp_path):
        run = RunDir(tmp_path / "run")
        folder = run.claim_stage("iter_1", self.CONFIG, overwrite=False)
        (folder / "labels.parquet").write_text("stale results")
        changed = {**self.CONFIG, "data": {"seed": 1}}
        assert run.check_stage("iter_1", changed, overwrite=True) is False
        assert (folder / "labels.parquet").exists()  # checking writes and deletes nothing
        assert run.claim_stage("iter_1", changed, overwrite=True) == folder
        assert listing(folder) == [STAGE_FILE]
        assert read_json(folder / STAGE_FILE)["config"] == changed

    def test_other_stages_are_untouched_by_an_overwrite(self, tmp_path):
        run = RunDir(tmp_path / "run")
        run.claim_stage("annotate", {"annotator": "embedding"}, overwrite=False)
        (run.stage("annotate") / "pseudo.parquet").write_text("keep me")
        run.claim_stage("iter_1", self.CONFIG, overwrite=False)
        run.claim_stage("iter_1", {"train": {"loss": "pn"}}, overwrite=True)
        assert (run.stage("annotate") / "pseudo.parquet").read_text() == "keep me"

    @pytest.mark.parametrize("overwrite", [False, True])
    def test_a_folder_silr_did_not_make_is_never_deleted(self, tmp_path, overwrite):
        run = RunDir(tmp_path / "run")
        user_folder = run.stage("iter_1")
        user_folder.mkdir(parents=True)
        (user_folder / "thesis.tex").write_text("precious")
        with pytest.raises(RunConflictError, match=r"iter_1 exists and was not made by silr; choose another"):
            run.claim_stage("iter_1", self.CONFIG, overwrite=overwrite)
        assert (user_folder / "thesis.tex").read_text() == "precious"
        assert listing(user_folder) == ["thesis.tex"]

    def test_an_empty_existing_folder_is_claimed(self, tmp_path):
        run = RunDir(tmp_path / "run")
        run.stage("iter_1").mkdir(parents=True)
        folder = run.claim_stage("iter_1", self.CONFIG, overwrite=False)
        assert listing(folder) == [STAGE_FILE]

    @pytest.mark.parametrize("damage", ["{truncated", "[]"])
    def test_a_corrupt_stage_file_names_the_folder_to_delete(self, tmp_path, damage):
        run = RunDir(tmp_path / "run")
        folder = run.claim_stage("iter_1", self.CONFIG, overwrite=False)
        (folder / STAGE_FILE).write_text(damage)
        with pytest.raises(ValueError, match=r"iter_1/stage\.json is unreadable, .* delete the folder .*iter_1 and rerun"):
            run.claim_stage("iter_1", self.CONFIG, overwrite=True)
        assert (folder / STAGE_FILE).exists()  # not deleted on a guess
        shutil.rmtree(folder)  # the advice works
        assert listing(run.claim_stage("iter_1", self.CONFIG, overwrite=False)) == [STAGE_FILE]


def dead_pid() -> int:
    """The id of a process that has exited (and been reaped)."""
    import subprocess
    import sys

    child = subprocess.Popen([sys.executable, "-c", "import os; print(os.getpid())"], stdout=subprocess.PIPE,
                             text=True)
    return int(child.communicate()[0])


def temporary_of(target, pid: int):
    """The name silr's writer with process id ``pid`` (on this host) would give a temporary of ``target``."""
    name = _temporary_name(target)
    return name.with_name(name.name.replace(f"{os.getpid():08x}", f"{pid:08x}"))


class TestLeftoversOfKilledWrites:
    """kill -9 mid-write leaves `.<name>.<hex>.tmp`; the next write of that target, or claiming a stage, removes it."""

    def test_temporary_names_are_recognisable_and_carry_the_writer(self, tmp_path):
        name = _temporary_name(tmp_path / "accuracy.png").name
        assert name.startswith(".accuracy.png.") and name.endswith(".tmp")
        assert f"{os.getpid():08x}" in name

    def test_the_next_write_of_a_target_removes_its_stale_temporaries(self, tmp_path):
        stale_file = temporary_of(tmp_path / "accuracy.png", dead_pid())
        stale_file.write_bytes(b"half a png")
        old_style = tmp_path / ".accuracy.png.0123456789ab.tmp"  # written by earlier versions: no writer recorded
        old_style.write_bytes(b"half a png")
        mine_in_flight = temporary_of(tmp_path / "accuracy.png", os.getpid())  # this process: a live writer
        mine_in_flight.write_bytes(b"being written")
        other_target = temporary_of(tmp_path / "priors.png", dead_pid())
        other_target.write_bytes(b"another file's")
        not_ours = [tmp_path / ".accuracy.png.tmp", tmp_path / ".accuracy.png.xyz.tmp", tmp_path / "accuracy.png.tmp"]
        for path in not_ours:
            path.write_text("someone else's")
        write_text(tmp_path / "accuracy.png", "png")
        assert listing(tmp_path) == sorted(["accuracy.png", mine_in_flight.name, other_target.name,
                                            *(p.name for p in not_ours)])

    def test_claiming_a_stage_removes_stale_temporaries_of_the_run_and_the_stage(self, tmp_path):
        run = RunDir(tmp_path / "run")
        folder = run.claim_stage("refine", {"a": 1}, overwrite=False)
        (folder / "iter_1").mkdir()
        (folder / "iter_1" / "labels.parquet").write_text("results")
        pid = dead_pid()
        leftovers = [temporary_of(run.root / "config.yaml", pid), temporary_of(folder / "accuracy.png", pid),
                     folder / ".metrics.csv.0123456789ab.tmp"]
        for path in leftovers:
            path.write_text("half")
        stale_dir = temporary_of(folder / "iter_2", pid)
        (stale_dir / "classifier").mkdir(parents=True)
        (stale_dir / "classifier" / "model.safetensors").write_bytes(b"88 MB, in real life")
        other_stage = temporary_of(run.stage("annotate") / "labels.parquet", pid)
        other_stage.parent.mkdir()
        other_stage.write_text("not this stage's")
        assert run.claim_stage("refine", {"a": 1}, overwrite=False) == folder
        assert listing(run.root) == ["annotate", "refine"]
        assert listing(folder) == ["iter_1", STAGE_FILE]
        assert (folder / "iter_1" / "labels.parquet").read_text() == "results"
        assert other_stage.exists()

    def test_a_stage_holding_only_leftovers_is_still_silr_made(self, tmp_path):
        """Killed between creating the stage folder and renaming its stage.json into it."""
        run = RunDir(tmp_path / "run")
        run.stage("annotate").mkdir(parents=True)
        temporary_of(run.stage("annotate") / STAGE_FILE, dead_pid()).write_text("{")
        folder = run.claim_stage("annotate", {"a": 1}, overwrite=False)
        assert listing(folder) == [STAGE_FILE]


class TestFileModes:
    def test_a_file_a_library_wrote_as_0600_gets_the_usual_mode(self, tmp_path, umask):
        import torch
        from safetensors.torch import save_file

        with atomic_path(tmp_path / "features.safetensors") as tmp:
            save_file({"x": torch.zeros(2)}, str(tmp))  # safetensors replaces the file with a 0o600 one
        assert (tmp_path / "features.safetensors").stat().st_mode & 0o777 == 0o666 & ~umask

    def test_files_and_folders_inside_an_atomic_dir_get_the_usual_modes(self, tmp_path, umask):
        import tempfile

        with atomic_dir(tmp_path / "model") as tmp:
            private = Path(tempfile.mkdtemp(dir=tmp))  # 0o700
            (private / "weights.bin").write_bytes(b"w")
            (private / "weights.bin").chmod(0o600)
            (tmp / "run.sh").write_text("#!/bin/sh\n")
            (tmp / "run.sh").chmod(0o700)
        folder = tmp_path / "model"
        assert folder.stat().st_mode & 0o777 == 0o777 & ~umask
        assert (folder / private.name).stat().st_mode & 0o777 == 0o777 & ~umask
        assert (folder / private.name / "weights.bin").stat().st_mode & 0o777 == 0o666 & ~umask
        assert (folder / "run.sh").stat().st_mode & 0o777 == 0o777 & ~umask  # execute bits kept


class TestCredentialsAreNeverWritten:
    CONFIG = {"annotator": {"kind": "openai", "base_url": "http://alice:s3cret-pw@10.0.0.5:8000/v1"},
              "notes": ["see https://bob:hunter2@example.org/x"]}

    def test_config_yaml_holds_no_user_or_password(self, tmp_path):
        write_yaml(tmp_path / "config.yaml", self.CONFIG)
        text = (tmp_path / "config.yaml").read_text()
        assert "s3cret-pw" not in text and "alice" not in text and "hunter2" not in text
        assert "http://***@10.0.0.5:8000/v1" in text and "https://***@example.org/x" in text

    def test_stage_json_and_conflict_messages_hold_no_password(self, tmp_path):
        run = RunDir(tmp_path / "run")
        folder = run.claim_stage("annotate", self.CONFIG, overwrite=False)
        assert "s3cret-pw" not in (folder / STAGE_FILE).read_text()
        # Credentials do not change results: a new password resumes the stage.
        new_password = {**self.CONFIG,
                        "annotator": {"kind": "openai", "base_url": "http://alice:pw2@10.0.0.5:8000/v1"}}
        assert run.check_stage("annotate", new_password, overwrite=False) is True
        moved = {**self.CONFIG, "annotator": {"kind": "openai", "base_url": "http://alice:pw2@10.0.0.6:8000/v1"}}
        with pytest.raises(RunConflictError) as err:
            run.check_stage("annotate", moved, overwrite=False)
        assert "10.0.0.6" in str(err.value) and "pw2" not in str(err.value) and "alice" not in str(err.value)
