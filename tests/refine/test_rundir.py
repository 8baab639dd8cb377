"""Specs for ``refine.rundir``: atomic writes, stage fingerprints, and never touching a folder silr did not make."""

from __future__ import annotations

import json
import os
import shutil

import numpy as np
import pandas as pd
import pytest

from refine.rundir import (
    STAGE_FILE,
    RunConflictError,
    RunDir,
    atomic_dir,
    atomic_path,
    describe_difference,
    fingerprint,
    read_json,
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
