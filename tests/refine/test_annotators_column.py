"""kind=column, and what annotate_corpus does around every kind: writing, reusing and checking labels.parquet."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from refine.annotators import LABELS_FILE, annotate_corpus
from refine.annotators.column import column_labels
from refine.config import AnnotatorConfig


def make_corpus(pseudo: list) -> pd.DataFrame:
    n = len(pseudo)
    return pd.DataFrame({
        "id": np.arange(100, 100 + n),
        "text": [f"text {i}" for i in range(n)],
        "gold": [1, 0] * (n // 2) + [0] * (n % 2),
        "split": ["train"] * (n - 2) + ["test"] * 2,
        "labeled": [True] * 2 + [False] * (n - 2),
        "llm_label": pseudo,
    })


def test_values_map_by_value_or_text():
    corpus = pd.DataFrame({"a": [1, 0, 1.0, "1", True], "b": ["unsafe", "safe", "Unsafe", "unsafe", "x"]})
    np.testing.assert_array_equal(column_labels(corpus, "a", [1]), [1, 0, 1, 1, 1])
    np.testing.assert_array_equal(column_labels(corpus, "b", ["unsafe"]), [1, 0, 0, 1, 0])


def test_missing_values_and_missing_column_are_errors():
    corpus = pd.DataFrame({"a": [1, None, 0, None]})
    with pytest.raises(ValueError, match="annotator column 'a' has 2 missing values of 4"):
        column_labels(corpus, "a", [1])
    with pytest.raises(ValueError, match=r"annotator column 'z' not found in the corpus \(found: a\)"):
        column_labels(corpus, "z", [1])


def test_annotate_writes_labels_and_a_rerun_reads_them_back(tmp_path):
    corpus = make_corpus(["yes", "no", "no", "yes", "no", "yes"])
    config = AnnotatorConfig(kind="column", column="llm_label", column_positive_values=["yes"])
    labels = annotate_corpus(corpus, config, tmp_path)
    assert list(labels.columns) == ["id", "annotator_score", "pseudo_label"]
    np.testing.assert_array_equal(labels["id"], corpus["id"])
    np.testing.assert_array_equal(labels["pseudo_label"], [1, 0, 0, 1, 0, 1])
    np.testing.assert_array_equal(labels["annotator_score"], [1.0, -1.0, -1.0, 1.0, -1.0, 1.0])
    assert (tmp_path / LABELS_FILE).exists()
    # The rerun must not look at the data again: change the column, get the stored labels.
    again = annotate_corpus(corpus.assign(llm_label="no"), config, tmp_path)
    pd.testing.assert_frame_equal(again, labels)


def test_corrupt_or_foreign_labels_file_names_the_file(tmp_path):
    corpus = make_corpus(["yes", "no", "no", "yes"])
    config = AnnotatorConfig(kind="column", column="llm_label", column_positive_values=["yes"])
    (tmp_path / LABELS_FILE).write_bytes(b"not a parquet file")
    with pytest.raises(ValueError, match=f"{LABELS_FILE} is corrupt .*; delete it and rerun"):
        annotate_corpus(corpus, config, tmp_path)
    (tmp_path / LABELS_FILE).unlink()
    annotate_corpus(corpus, config, tmp_path)
    with pytest.raises(ValueError, match=f"{LABELS_FILE} does not match the corpus .*; delete it and rerun"):
        annotate_corpus(corpus.assign(id=corpus["id"] + 1), config, tmp_path)


def test_one_class_column_is_refused_and_nothing_is_written(tmp_path):
    corpus = make_corpus(["no"] * 6)
    config = AnnotatorConfig(kind="column", column="llm_label", column_positive_values=["yes"])
    with pytest.raises(ValueError, match="labelled all 4 training texts safe.*column_positive_values"):
        annotate_corpus(corpus, config, tmp_path)
    assert not (tmp_path / LABELS_FILE).exists()


class TestValuesInNeitherList:
    """A judge that replies with free text instead of a class: counted, reported, handled by column_other."""

    corpus = pd.DataFrame({"judge": ["unsafe", "safe", "I'm sorry, I can't rate that.", "safe", "unsafe", "n/a"]})

    def test_without_negative_values_every_other_value_is_safe(self):
        np.testing.assert_array_equal(column_labels(self.corpus, "judge", ["unsafe"]), [1, 0, 0, 0, 1, 0])

    def test_error_names_the_values_and_the_setting(self):
        with pytest.raises(ValueError, match=r"2 of 6 values are neither \['unsafe'\] nor \['safe'\] "
                                             r"\(\"I'm sorry, I can't rate that.\" ×1; 'n/a' ×1\); set "
                                             "annotator.column_other"):
            column_labels(self.corpus, "judge", ["unsafe"], ["safe"])

    @pytest.mark.parametrize(("other", "expected"), [("abstain", -1), ("unsafe", 1), ("safe", 0)])
    def test_the_rule_is_applied_and_logged_on_one_line(self, other, expected, caplog):
        labels = column_labels(self.corpus, "judge", ["unsafe"], ["safe"], other)
        np.testing.assert_array_equal(labels, [1, 0, expected, 0, 1, expected])
        lines = [r.getMessage() for r in caplog.records if "neither" in r.getMessage()]
        assert len(lines) == 1 and "\n" not in lines[0] and f"column_other={other}" in lines[0]

    def test_abstentions_score_zero_and_do_not_count_as_a_class(self, tmp_path):
        corpus = make_corpus(["yes", "no", "??", "yes", "no", "no"])
        config = AnnotatorConfig(kind="column", column="llm_label", column_positive_values=["yes"],
                                 column_negative_values=["no"], column_other="abstain")
        labels = annotate_corpus(corpus, config, tmp_path)
        np.testing.assert_array_equal(labels["pseudo_label"], [1, 0, -1, 1, 0, 0])
        np.testing.assert_array_equal(labels["annotator_score"], [1.0, -1.0, 0.0, 1.0, -1.0, -1.0])

    def test_column_other_needs_negative_values(self):
        with pytest.raises(ValueError, match="column_other=abstain needs column_negative_values"):
            AnnotatorConfig(kind="column", column="judge", column_other="abstain")
