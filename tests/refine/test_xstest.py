"""Specs for ``refine.xstest``: the real XSTest answers as a response-level corpus (counts from its SOURCE.md)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pandas as pd
import pytest

from refine.config import DataConfig
from refine.corpus import load_corpus
from refine.xstest import answer_safety, read_xstest

XSTEST = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "xstest"
MODELS = ["gpt4", "llama2new", "llama2orig", "mistralguard", "mistralinstruct"]


@pytest.fixture(scope="module")
def xstest() -> pd.DataFrame:
    assert XSTEST.is_dir(), f"{XSTEST} is missing: the shared data folder must sit beside the repository"
    return read_xstest(XSTEST)


def test_every_answer_of_every_model(xstest):
    assert len(xstest) == 1500 and sorted(xstest["model"].unique()) == MODELS
    assert xstest.groupby("model")["prompt_id"].nunique().eq(300).all()
    assert (xstest.drop_duplicates("prompt_id")["prompt_label"].value_counts() == pd.Series({"safe": 167, "unsafe": 133})).all()
    assert (xstest["prompt_id"] % 3 != 0).all()  # the 150 prompts with id % 3 == 0 are kept outside ../shared/data


def test_answer_safety_matches_the_counts_of_source_md(xstest):
    # SOURCE.md: answers that comply with an unsafe prompt / refuse a safe one, per model.
    unsafe_prompt = xstest["prompt_label"] == "unsafe"
    complies_unsafe = (~xstest["gold_refusal"] & unsafe_prompt).groupby(xstest["model"]).sum()
    refuses_safe = (xstest["gold_refusal"] & ~unsafe_prompt).groupby(xstest["model"]).sum()
    assert complies_unsafe.to_dict() == {"gpt4": 0, "llama2new": 0, "llama2orig": 0, "mistralguard": 4,
                                         "mistralinstruct": 84}
    assert refuses_safe.to_dict() == {"gpt4": 17, "llama2new": 50, "llama2orig": 100, "mistralguard": 30,
                                      "mistralinstruct": 4}
    assert (xstest["gold_answer"] == "unsafe").sum() == 88 + 201


def test_judges_keep_replies_that_are_no_class(xstest):
    free_text = ~xstest["gpt4_answer"].isin(["unsafe", "safe"])
    assert free_text.sum() == 7 and set(xstest.loc[free_text, "model"]) == {"mistralinstruct"}
    assert xstest["strmatch_answer"].isin(["unsafe", "safe"]).all()
    # SOURCE.md: the GPT-4 judge agrees with the gold on 75.0% of mistralinstruct's answers, the string matcher 85.0%.
    mistral = xstest[xstest["model"] == "mistralinstruct"]
    assert (mistral["gpt4_answer"] == mistral["gold_answer"]).mean() == pytest.approx(0.75, abs=0.005)
    assert (mistral["strmatch_answer"] == mistral["gold_answer"]).mean() == pytest.approx(0.85, abs=0.005)


def test_answer_safety_truth_table():
    labels = pd.Series(["1_full_compliance", "2_full_refusal", "3_partial_refusal", "1_full_compliance",
                        "2_full_refusal", "free text"])
    unsafe_prompt = pd.Series([True, True, True, False, False, True])
    assert answer_safety(labels, unsafe_prompt).tolist() == ["unsafe", "safe", "safe", "safe", "unsafe", "free text"]


def test_a_corpus_split_by_prompt(xstest):
    config = DataConfig(path=str(XSTEST), format="xstest", text_column=None, prompt_column="prompt",
                        response_column="response", label_columns=["gold_answer"], positive_values=["unsafe"],
                        negative_values=["safe"], group_column="prompt_id", test_fraction=0.3, num_labeled=50)
    corpus = load_corpus(config, extra_columns=("gpt4_answer",))
    assert len(corpus) == 1500 and corpus["gold"].sum() == 289
    test_prompts = set(corpus.loc[corpus["split"] == "test", "group"])
    assert len(test_prompts) == 90 and not test_prompts & set(corpus.loc[corpus["split"] == "train", "group"])
    assert corpus["text"][0] == f"User: {corpus['prompt'][0]}\nAssistant: {corpus['response'][0]}"
    assert (corpus["response"] == xstest["response"]).all() and corpus["labeled"].sum() == 50


def test_a_missing_folder_or_file_is_one_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="xstest folder .* not found; check data.path"):
        read_xstest(tmp_path / "nowhere")
    with pytest.raises(FileNotFoundError, match="xstest_prompts.csv not found"):
        read_xstest(tmp_path)
    shutil.copy(XSTEST / "xstest_prompts.csv", tmp_path)
    with pytest.raises(FileNotFoundError, match="no xstest_<model>_gpteval.csv"):
        read_xstest(tmp_path)
    shutil.copy(XSTEST / "xstest_gpt4_gpteval.csv", tmp_path)
    with pytest.raises(FileNotFoundError, match="xstest_gpt4_streval.csv not found"):
        read_xstest(tmp_path)
    pd.read_csv(XSTEST / "xstest_gpt4_streval.csv").drop(columns="strmatch_label").to_csv(
        tmp_path / "xstest_gpt4_streval.csv", index=False)
    with pytest.raises(ValueError, match="lacks column\\(s\\) strmatch_label"):
        read_xstest(tmp_path)


@pytest.mark.parametrize("name", ["xstest_string_match", "xstest_gpt4_judge", "xstest_embedding", "xstest_hf_judge"])
def test_the_shipped_answer_level_configs_load_the_same_corpus(name):
    from refine.config import RefineConfig
    from refine.config_loading import load_config

    config = load_config(RefineConfig, Path(__file__).resolve().parents[2] / "configs" / "refine" / f"{name}.yaml")
    data = config.data
    assert (data.format, data.group_column, data.label_columns, config.classifier.backbone) == (
        "xstest", "prompt_id", ["gold_answer"], "finetune")
    assert config.train.surrogate == "logistic" and "${data_dir}" not in data.path
    if config.annotator.kind == "hf":  # the judge is shown a prompt and an answer, in the training template's form
        assert all(shot["text"].startswith("User: ") and "\nAssistant: " in shot["text"]
                   for shot in config.annotator.few_shot)
