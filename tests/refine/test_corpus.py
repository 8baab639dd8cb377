"""Specs for ``refine.corpus``: reading files, mapping columns to text and gold labels, and the seeded splits.

The real data sets live beside the repository in ``../shared/data`` (read-only; see its README.md). CI has them there
too, so a missing folder is a failure, not a skip. Counts below are from each folder's SOURCE.md.
"""

from __future__ import annotations

import gzip
import json
import logging
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from refine.config import DataConfig
from refine.corpus import NO_GOLD, gold_labels, load_corpus, read_table, split_corpus

DATA = Path(__file__).resolve().parents[2].parent / "shared" / "data"
OPENAI_MODERATION = DATA / "openai_moderation" / "samples-1680.jsonl.gz"
DAVIDSON = DATA / "davidson_hate_offensive" / "labeled_data.csv"
HATECHECK = DATA / "hatecheck" / "test_suite_cases.csv"
OPENAI_CATEGORIES = ["S", "H", "V", "HR", "SH", "S3", "H2", "V2"]


@pytest.fixture(scope="module", autouse=True)
def datasets_cache(tmp_path_factory):
    """Keep the ``datasets`` Arrow cache of these tests out of the user's ~/.cache."""
    import datasets

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(datasets.config, "HF_DATASETS_CACHE", str(tmp_path_factory.mktemp("hf_datasets_cache")))
        yield


def require(path: Path) -> str:
    assert path.is_file(), f"{path} is missing: the shared data folder must sit beside the repository (../shared/data)"
    return str(path)


@pytest.fixture(scope="module")
def openai_moderation() -> pd.DataFrame:
    config = DataConfig(path=require(OPENAI_MODERATION), text_column="prompt", label_columns=OPENAI_CATEGORIES)
    return load_corpus(config)


@pytest.fixture
def toy_frame() -> pd.DataFrame:
    """Twelve rows: 4 unsafe, 6 safe, 2 without a gold label; one prompt/response pair per row."""
    return pd.DataFrame(
        {
            "text": [f"text {i}" for i in range(12)],
            "label": [1, 0, 0, 1, 0, 1, 0, 0, None, 1, 0, None],
            "prompt": [f"question {i}" for i in range(12)],
            "response": [f"answer {i}" for i in range(12)],
            "annotator": [i % 2 for i in range(12)],
        }
    )


def write(frame: pd.DataFrame, path: Path) -> str:
    """Write ``frame`` in the format named by ``path``'s suffix."""
    name = path.name
    if name.endswith(".csv"):
        frame.to_csv(path, index=False)
    elif name.endswith(".jsonl"):
        frame.to_json(path, orient="records", lines=True)
    elif name.endswith(".jsonl.gz"):
        with gzip.open(path, "wt") as handle:
            handle.write(frame.to_json(orient="records", lines=True))
    elif name.endswith(".json"):
        path.write_text(json.dumps(json.loads(frame.to_json(orient="records"))))  # one JSON array
    elif name.endswith(".parquet"):
        frame.to_parquet(path, index=False)
    else:
        path.write_text(frame.to_csv(index=False))
    return str(path)


class TestRealCorpora:
    def test_openai_moderation_any_category_flagged(self, openai_moderation):
        corpus = openai_moderation
        assert len(corpus) == 1680
        assert (corpus["gold"] == 1).sum() == 522  # unsafe = any of the 8 categories is 1
        assert (corpus["gold"] == 0).sum() == 1158
        assert (corpus["gold"] == NO_GOLD).sum() == 0  # every row is labelled in at least one category

    def test_openai_moderation_texts_and_ids_follow_the_file(self, openai_moderation):
        source = pd.read_json(OPENAI_MODERATION, lines=True)
        assert openai_moderation["id"].tolist() == list(range(1680))
        assert openai_moderation["text"].tolist() == source["prompt"].tolist()

    def test_openai_moderation_split(self, openai_moderation):
        corpus = openai_moderation
        assert list(corpus.columns) == ["id", "text", "gold", "split", "labeled"]
        assert (corpus["split"] == "test").sum() == 504  # round(0.3 * 1680)
        assert corpus["labeled"].sum() == 50
        assert (corpus.loc[corpus["labeled"], "split"] == "train").all()

    def test_davidson_hate_or_offensive(self):
        config = DataConfig(
            path=require(DAVIDSON), text_column="tweet", label_columns=["class"], positive_values=[0, 1]
        )
        corpus = load_corpus(config)
        assert len(corpus) == 24_783
        assert (corpus["gold"] == 1).sum() == 20_620  # hate 1,430 + offensive 19,190
        assert (corpus["gold"] == 0).sum() == 4_163

    def test_davidson_sample_is_seeded(self):
        def sample(sample_seed: int, seed: int = 0) -> pd.DataFrame:
            return load_corpus(
                DataConfig(path=require(DAVIDSON), text_column="tweet", label_columns=["class"],
                           positive_values=[0, 1], max_examples=2000, sample_seed=sample_seed, seed=seed)
            )

        first, again, other = sample(3), sample(3), sample(4)
        pd.testing.assert_frame_equal(first, again)
        assert len(first) == 2000 and first["id"].is_unique and first["id"].is_monotonic_increasing
        assert first["id"].tolist() != other["id"].tolist()
        # The split seed draws other test/L rows from the same fixed sample.
        resplit = sample(3, seed=1)
        assert resplit["id"].tolist() == first["id"].tolist()
        assert resplit["split"].tolist() != first["split"].tolist()
        # ids are row numbers of the source file, so each text is the one on that row.
        source = pd.read_csv(DAVIDSON)
        assert first["text"].tolist() == source["tweet"].iloc[first["id"]].tolist()
        expected_gold = source["class"].iloc[first["id"]].isin([0, 1]).astype(int).tolist()
        assert first["gold"].tolist() == expected_gold

    def test_hatecheck_string_labels(self):
        config = DataConfig(
            path=require(HATECHECK), text_column="test_case", label_columns=["label_gold"], positive_values=["hateful"]
        )
        corpus = load_corpus(config)
        assert len(corpus) == 3728
        assert (corpus["gold"] == 1).sum() == 2563
        assert (corpus["gold"] == 0).sum() == 1165


class TestSplitCorpus:
    @pytest.fixture
    def gold(self) -> np.ndarray:
        # 1,000 rows: 300 unsafe, 600 safe, 100 without gold, in a seeded random order.
        values = np.r_[np.ones(300, int), np.zeros(600, int), np.full(100, NO_GOLD)]
        return np.random.default_rng(0).permutation(values)

    def test_sizes_and_disjointness(self, gold):
        is_test, is_labeled = split_corpus(gold, test_fraction=0.3, num_labeled=50, seed=1)
        assert is_test.sum() == 270  # round(0.3 * 900 gold rows)
        assert is_labeled.sum() == 50
        assert not (is_test & is_labeled).any()
        # Rows without gold stay in the training corpus, and neither split draws from them.
        assert not (is_test | is_labeled)[gold == NO_GOLD].any()

    def test_deterministic_per_seed(self, gold):
        first = split_corpus(gold, test_fraction=0.3, num_labeled=50, seed=1)
        again = split_corpus(gold, test_fraction=0.3, num_labeled=50, seed=1)
        other = split_corpus(gold, test_fraction=0.3, num_labeled=50, seed=2)
        assert all(np.array_equal(a, b) for a, b in zip(first, again, strict=True))
        assert not np.array_equal(first[0], other[0]) and not np.array_equal(first[1], other[1])

    def test_labelled_set_is_not_class_balanced(self, gold):
        # L is drawn at random: over 200 seeds, the share of unsafe texts in L averages the population's 1/3 (not
        # the 1/2 of a 25 + 25 draw). SE of the mean of 200 shares of 50 draws: sqrt(2/9 / 50 / 200) = 0.005.
        shares = [
            gold[split_corpus(gold, test_fraction=0.3, num_labeled=50, seed=seed)[1]].mean() for seed in range(200)
        ]
        assert np.mean(shares) == pytest.approx(1 / 3, abs=0.02)

    def test_no_test_split(self, gold):
        is_test, is_labeled = split_corpus(gold, test_fraction=0.0, num_labeled=900, seed=0)
        assert not is_test.any()
        assert np.array_equal(is_labeled, gold != NO_GOLD)  # all 900 gold rows

    def test_groups_never_straddle_the_split(self, gold):
        groups = np.arange(len(gold)) // 5  # 200 groups of 5 rows
        is_test, is_labeled = split_corpus(gold, test_fraction=0.3, num_labeled=50, seed=1, groups=groups)
        test_groups, train_groups = set(groups[is_test]), set(groups[~is_test & (gold != NO_GOLD)])
        assert not test_groups & train_groups
        assert len(test_groups) == 60  # round(0.3 * 200 groups that hold gold rows)
        assert is_labeled.sum() == 50 and not (is_test & is_labeled).any()
        assert not (is_test | is_labeled)[gold == NO_GOLD].any()
        other = split_corpus(gold, test_fraction=0.3, num_labeled=50, seed=2, groups=groups)[0]
        assert not np.array_equal(is_test, other)

    def test_labelled_set_too_large(self, gold):
        # 900 gold rows, 630 left after a 30% test split.
        with pytest.raises(ValueError, match=r"needs num_labeled=700 gold-labelled training rows but only 630 exist"):
            split_corpus(gold, test_fraction=0.3, num_labeled=700, seed=0)


class TestGoldLabels:
    def test_any_positive_column_makes_a_text_unsafe(self):
        # Float columns with gaps, as pandas reads an int column with missing values: 1.0 must match [1].
        frame = pd.DataFrame({"S": [1.0, 0.0, np.nan, np.nan, 0.0], "H": [np.nan, 1.0, 0.0, np.nan, 0.0]})
        # row 0: S=1 -> 1; row 1: H=1 -> 1; row 2: H=0 only -> 0; row 3: nothing filled -> -1; row 4: both 0 -> 0
        assert gold_labels(frame, ["S", "H"], [1]).tolist() == [1, 1, 0, -1, 0]

    def test_values_compare_across_types(self):
        frame = pd.DataFrame({"a": [1, 0, 2], "b": ["1", "0", "2"], "c": [1.0, 0.0, 2.5]})
        assert gold_labels(frame, ["a"], ["1"]).tolist() == [1, 0, 0]  # a quoted YAML value matches an int
        assert gold_labels(frame, ["b"], [1]).tolist() == [1, 0, 0]
        assert gold_labels(frame, ["c"], [1, 2]).tolist() == [1, 0, 0]  # 2.5 is not 2

    def test_no_label_columns_means_no_gold(self):
        assert gold_labels(pd.DataFrame({"x": [1, 2]}), [], [1]).tolist() == [NO_GOLD, NO_GOLD]


class TestFormats:
    @pytest.mark.parametrize(
        "name", ["corpus.csv", "corpus.jsonl", "corpus.jsonl.gz", "corpus.json", "corpus.parquet"]
    )
    def test_every_format_gives_the_same_corpus(self, tmp_path, toy_frame, name):
        config = DataConfig(path=write(toy_frame, tmp_path / name), label_columns=["label"], num_labeled=3,
                            test_fraction=0.3, seed=5)
        corpus = load_corpus(config, extra_columns=("annotator",))
        assert corpus["id"].tolist() == list(range(12))
        assert corpus["text"].tolist() == toy_frame["text"].tolist()
        assert corpus["gold"].tolist() == [1, 0, 0, 1, 0, 1, 0, 0, NO_GOLD, 1, 0, NO_GOLD]
        assert corpus["annotator"].tolist() == toy_frame["annotator"].tolist()
        # 10 gold rows: round(0.3 * 10) = 3 in test, 3 in L, none of them among the rows without gold.
        assert (corpus["split"] == "test").sum() == 3 and corpus["labeled"].sum() == 3
        assert (corpus.loc[corpus["gold"] == NO_GOLD, "split"] == "train").all()
        # The split depends on the gold labels and the seed only, not on the file format.
        expected = split_corpus(corpus["gold"].to_numpy(), test_fraction=0.3, num_labeled=3, seed=5)
        assert np.array_equal(corpus["split"] == "test", expected[0])
        assert np.array_equal(corpus["labeled"], expected[1])

    def test_no_label_columns_keeps_every_row_in_train(self, tmp_path, toy_frame):
        corpus = load_corpus(DataConfig(path=write(toy_frame, tmp_path / "corpus.csv")))
        assert (corpus["gold"] == NO_GOLD).all()
        assert (corpus["split"] == "train").all() and not corpus["labeled"].any()


class TestTemplate:
    def test_prompt_response_pairs_use_the_default_template(self, tmp_path, toy_frame):
        config = DataConfig(path=write(toy_frame, tmp_path / "pairs.csv"), text_column=None, prompt_column="prompt",
                            response_column="response")
        corpus = load_corpus(config)
        assert corpus["text"][0] == "User: question 0\nAssistant: answer 0"

    def test_custom_template_and_missing_responses(self, tmp_path, toy_frame):
        toy_frame.loc[2, "response"] = None
        config = DataConfig(path=write(toy_frame, tmp_path / "pairs.jsonl"), prompt_column="prompt",
                            response_column="response", template="Q: {prompt} | A: {response}")
        texts = load_corpus(config)["text"]
        assert texts[1] == "Q: question 1 | A: answer 1"
        assert texts[2] == "Q: question 2 | A: "  # a missing response is empty text, not "None"

    def test_a_prompt_column_alone_does_not_replace_the_text_column(self, tmp_path, toy_frame):
        # Without response_column the pair template is not used, so only text_column has to exist.
        config = DataConfig(path=write(toy_frame, tmp_path / "corpus.csv"), text_column="text", prompt_column="prompt")
        assert load_corpus(config)["text"][0] == "text 0"


class TestErrors:
    def test_missing_file(self, tmp_path):
        with pytest.raises(FileNotFoundError, match=r"corpus file .*missing\.csv not found; check data\.path"):
            load_corpus(DataConfig(path=str(tmp_path / "missing.csv")))

    def test_unsupported_format(self, tmp_path, toy_frame):
        path = write(toy_frame, tmp_path / "corpus.tsv")
        with pytest.raises(ValueError, match=r"cannot read .*corpus\.tsv: use \.csv, \.jsonl, \.json, \.parquet"):
            read_table(path)

    def test_missing_text_column_lists_the_columns_found(self, tmp_path, toy_frame):
        path = write(toy_frame[["text", "label"]], tmp_path / "corpus.csv")
        with pytest.raises(ValueError, match=r"column 'tweet' not found in .*corpus\.csv \(found: text, label\); set "
                                             r"data\.text_column"):
            load_corpus(DataConfig(path=path, text_column="tweet"))

    def test_missing_annotator_column_names_its_setting(self, tmp_path, toy_frame):
        path = write(toy_frame[["text", "label"]], tmp_path / "corpus.csv")
        with pytest.raises(ValueError, match=r"column 'llm' not found .* / annotator\.column to existing columns"):
            load_corpus(DataConfig(path=path), extra_columns=("llm",))

    def test_missing_label_columns_are_named_together(self, tmp_path, toy_frame):
        path = write(toy_frame[["text", "label"]], tmp_path / "corpus.csv")
        with pytest.raises(ValueError, match=r"column 'S', 'H' not found"):
            load_corpus(DataConfig(path=path, label_columns=["label", "S", "H"]))

    def test_empty_file(self, tmp_path):
        path = tmp_path / "corpus.jsonl"
        path.write_text("")
        with pytest.raises(ValueError, match=r"corpus .*corpus\.jsonl is empty; point data\.path at a file with rows"):
            load_corpus(DataConfig(path=str(path)))

    def test_unreadable_file(self, tmp_path):
        path = tmp_path / "corpus.jsonl"
        path.write_text('{"text": "fine"}\n{not json\n')
        with pytest.raises(ValueError, match=r"cannot read corpus file .*corpus\.jsonl: "):
            load_corpus(DataConfig(path=str(path)))

    def test_every_text_blank(self, tmp_path):
        path = write(pd.DataFrame({"text": ["", "  ", None], "label": [0, 1, 0]}), tmp_path / "corpus.parquet")
        with pytest.raises(ValueError, match=r"every text in .*corpus\.parquet is empty; check data\.text_column"):
            load_corpus(DataConfig(path=path, label_columns=["label"], num_labeled=2, test_fraction=0.0))

    def test_some_blank_texts_are_kept_with_a_warning(self, tmp_path, caplog):
        frame = pd.DataFrame({"text": ["hello", " ", "world"], "label": [0, 1, 0]})
        with caplog.at_level(logging.WARNING, logger="refine.corpus"):
            corpus = load_corpus(DataConfig(path=write(frame, tmp_path / "corpus.parquet"), label_columns=["label"],
                                            num_labeled=2, test_fraction=0.0))
        assert len(corpus) == 3
        assert "1 of 3 texts are empty" in caplog.text

    def test_single_class_labels(self, tmp_path, toy_frame):
        path = write(toy_frame, tmp_path / "corpus.csv")
        with pytest.raises(ValueError, match=r"gold labels in label hold a single class \(10 rows\); check "
                                             r"data\.positive_values=\['unsafe'\]"):
            load_corpus(DataConfig(path=path, label_columns=["label"], positive_values=["unsafe"]))

    def test_labelled_set_larger_than_the_gold_rows(self, tmp_path, toy_frame):
        # 10 gold rows, 7 left after round(0.3 * 10) = 3 go to test.
        path = write(toy_frame, tmp_path / "corpus.csv")
        with pytest.raises(ValueError, match=r"needs num_labeled=8 .* but only 7 exist; lower data\.num_labeled"):
            load_corpus(DataConfig(path=path, label_columns=["label"], num_labeled=8))
