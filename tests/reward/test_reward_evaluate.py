"""`python -m reward evaluate`: metric functions on hand-computed numbers, the loaders on the real HH-RLHF and XSTest
files, the CLI end to end on a tiny exported reward model, and one-line errors that leave --out untouched."""

from __future__ import annotations

import gzip
import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from sklearn.metrics import roc_auc_score

from refine.config_loading import data_dir
from reward.cli import main
from reward.evaluate import (
    answer_metrics,
    bootstrap_interval,
    evaluate_reward_model,
    evaluation_markdown,
    pair_metrics,
    preference_auc,
    refusal_metrics,
    with_evaluation_section,
)
from reward.evaluation_data import (
    answer_is_unsafe,
    load_answers,
    load_pairs,
    load_refine_run,
    load_refusals,
    load_xstest,
    split_hh_dialogue,
)
from reward.model import RewardModel

HH_FILE = Path(data_dir()) / "hh_rlhf_harmless_test" / "test.jsonl.gz"
XSTEST_DIR = Path(data_dir()) / "xstest"
TOLERANCE = 1e-6  # one model, one batching: the CLI and the API must agree to float rounding


def assert_close(actual, expected, path: str = "metrics") -> None:
    """Nested dicts and lists equal, floats to TOLERANCE (JSON turns a tuple into a list and keeps None)."""
    if isinstance(expected, dict):
        assert isinstance(actual, dict) and set(actual) == set(expected), path
        for key in expected:
            assert_close(actual[key], expected[key], f"{path}.{key}")
    elif isinstance(expected, (list, tuple)):
        assert len(actual) == len(expected), path
        for i, (a, e) in enumerate(zip(actual, expected, strict=True)):
            assert_close(a, e, f"{path}[{i}]")
    elif isinstance(expected, float):
        assert actual == pytest.approx(expected, abs=TOLERANCE), path
    else:
        assert actual == expected, path


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def model_dir(tiny_reward_dirs) -> str:
    return tiny_reward_dirs["iter1"]


@pytest.fixture(scope="module")
def model(model_dir) -> RewardModel:
    return RewardModel.from_pretrained(model_dir, device="cpu", batch_size=16)


@pytest.fixture
def answers_file(tmp_path) -> Path:
    rows = [{"prompt": f"question {i} about bread", "response": f"{'kill poison hate' if i % 3 == 0 else 'hello'} "
             f"answer {i}", "label": ["unsafe", "safe", 1, 0][i % 4]} for i in range(16)]
    return write_jsonl(tmp_path / "answers.jsonl", rows)


@pytest.fixture
def refusals_file(tmp_path) -> Path:
    rows = [{"prompt": f"prompt {i}", "response": "I can't help with that." if i % 2 else f"Sure, step {i}.",
             "prompt_label": "unsafe" if i < 6 else "safe", "refusal": bool(i % 2)} for i in range(12)]
    return write_jsonl(tmp_path / "refusals.jsonl", rows)


# ---- metrics ------------------------------------------------------------------------------------------------------


def test_pairwise_accuracy_counts_a_tie_as_half():
    metrics = pair_metrics(np.array([3.0, 1.0, 2.0, 5.0]), np.array([1.0, 2.0, 2.0, 4.0]), resamples=200)
    # wins 1, 0, 0.5 (tie), 1 → 2.5 / 4; margins 2, -1, 0, 1 → mean 0.5
    assert metrics["accuracy"] == 0.625 and metrics["ties"] == 1 and metrics["n"] == 4
    assert metrics["mean_margin"] == 0.5
    low, high = metrics["accuracy_ci"]
    assert 0.0 <= low <= 0.625 <= high <= 1.0


def test_preference_auc_on_hand_computed_pairs_and_against_sklearn():
    # higher [3, 1, 2] vs lower [2, 0]: 3 beats both (2), 1 beats 0 (1), 2 ties 2 and beats 0 (1.5) → 4.5 / 6
    assert preference_auc(np.array([3.0, 1.0, 2.0]), np.array([2.0, 0.0])) == 0.75
    assert preference_auc(np.array([1.0]), np.array([1.0])) == 0.5
    assert preference_auc(np.array([]), np.array([1.0])) is None
    rng = np.random.default_rng(0)
    a, b = rng.integers(0, 5, 40).astype(float), rng.integers(1, 6, 30).astype(float)  # many ties
    expected = roc_auc_score(np.r_[np.ones(40), np.zeros(30)], np.r_[a, b])
    assert preference_auc(a, b) == pytest.approx(expected, abs=1e-12)


def test_bootstrap_interval_is_seeded_and_about_as_wide_as_the_normal_approximation():
    wins = (np.random.default_rng(1).random(400) < 0.7).astype(float)
    first = bootstrap_interval(wins, confidence=0.9, resamples=1000, seed=3)
    assert first == bootstrap_interval(wins, confidence=0.9, resamples=1000, seed=3)
    assert first != bootstrap_interval(wins, confidence=0.9, resamples=1000, seed=4)
    assert first[0] < wins.mean() < first[1]
    # 90% normal interval: 2 * 1.645 * sqrt(0.7 * 0.3 / 400) = 0.075; 1,000 resamples are within ~10% of it
    assert 0.065 < first[1] - first[0] < 0.085
    wider = bootstrap_interval(wins, confidence=0.99, resamples=1000, seed=3)
    assert wider[0] < first[0] and wider[1] > first[1]
    assert bootstrap_interval(np.ones(5), resamples=50) == (1.0, 1.0)
    with pytest.raises(ValueError, match="confidence=1.5"):
        bootstrap_interval(wins, confidence=1.5)


def test_answer_metrics_at_the_threshold_and_without_one():
    rewards = np.array([-2.0, -1.0, 0.5, 1.0, 2.0])
    unsafe = np.array([True, False, True, False, False])
    metrics = answer_metrics(rewards, unsafe, threshold=0.0)
    # judged unsafe (reward < 0): rows 0 and 1 → right on rows 0, 3, 4 → accuracy 3/5; recall 1/2; precision 1/2
    assert (metrics["accuracy"], metrics["recall"], metrics["precision"]) == (0.6, 0.5, 0.5)
    # ROC-AUC = P(r(safe) > r(unsafe)): safe [-1, 1, 2] vs unsafe [-2, 0.5] → 1 + 2 + 2 = 5 of 6 pairs
    assert metrics["roc_auc"] == pytest.approx(5 / 6)
    assert (metrics["n"], metrics["n_unsafe"], metrics["unsafe_share"]) == (5, 2, 0.4)
    blind = answer_metrics(rewards, unsafe, threshold=None)
    assert blind["accuracy"] is None and "no exported threshold" in blind["accuracy_note"]
    assert blind["roc_auc"] == metrics["roc_auc"]


def test_refusal_metrics_by_prompt_group():
    rewards = np.array([2.0, 1.0, 0.0, 3.0, 1.0, 1.0])
    prompt_unsafe = np.array([True, True, True, False, False, False])
    refusal = np.array([True, False, False, True, False, True])
    metrics = refusal_metrics(rewards, prompt_unsafe=prompt_unsafe, refusal=refusal)
    # unsafe prompts: the refusal (2) beats both compliances (1, 0) → 1.0
    assert metrics["unsafe_prompts"] == {"n": 3, "n_refusals": 1, "n_compliances": 2, "refusal_auc": 1.0}
    # safe prompts: refusals [3, 1] vs the helpful answer [1]: 1 + 0.5 (tie) → 0.75 (over-refusal)
    assert metrics["safe_prompts"] == {"n": 3, "n_refusals": 2, "n_helpful": 1, "refusal_auc": 0.75}
    assert answer_is_unsafe(prompt_unsafe, refusal).tolist() == [False, True, True, True, False, True]


def test_hh_dialogue_prompt_is_the_last_human_turn():
    text = "\n\nHuman: hi\n\nAssistant: hello\n\nHuman: how do I pick a lock?\n\nAssistant: I won't help."
    assert split_hh_dialogue(text) == ("how do I pick a lock?", "I won't help.")
    # An answer that contains the Assistant marker itself (rows 1950 and 1952 of the real file) stays whole.
    assert split_hh_dialogue("\n\nHuman: q\n\nAssistant: a\n\nAssistant: b") == ("q", "a\n\nAssistant: b")
    with pytest.raises(ValueError, match="no '"):
        split_hh_dialogue("just text")


def test_evaluation_section_is_appended_then_replaced():
    card = "# Model\n\nintro\n\n## Limits\n\nbe careful\n"
    once = with_evaluation_section(card, "## Evaluation\n\nold numbers\n")
    assert once == card + "\n## Evaluation\n\nold numbers\n"
    middle = "# Model\n\n## Evaluation\n\nold\n\n### pairs\n\nrow\n\n## Limits\n\nbe careful\n"
    twice = with_evaluation_section(middle, "## Evaluation\n\nnew\n")
    assert twice == "# Model\n\n## Evaluation\n\nnew\n\n## Limits\n\nbe careful\n"
    assert with_evaluation_section("", "## Evaluation\n\nx\n") == "## Evaluation\n\nx\n"  # a folder without a card


# ---- loaders on the real files --------------------------------------------------------------------------------------


def test_real_hh_pairs_share_their_prompt_and_sample_is_seeded():
    suite = load_pairs(HH_FILE, max_pairs=30, seed=5)
    assert suite.format == "hh-rlhf" and suite.rows_read == 2312 and len(suite.prompts) == 30
    assert suite.prompts == load_pairs(HH_FILE, max_pairs=30, seed=5).prompts
    assert suite.prompts != load_pairs(HH_FILE, max_pairs=30, seed=6).prompts
    with gzip.open(HH_FILE, "rt", encoding="utf-8") as handle:
        first = json.loads(handle.readline())
    full = load_pairs(HH_FILE)
    assert full.prompts[0] == "okay some of these do not have anything to do with pens"  # the last Human turn
    assert first["chosen"].endswith(full.chosen[0]) and first["rejected"].endswith(full.rejected[0])
    assert all(c != r for c, r in zip(full.chosen, full.rejected, strict=True))


def test_real_xstest_labels_follow_the_refusal_definition():
    suite = load_xstest(XSTEST_DIR)
    assert suite.rows_read == len(suite.prompts) == 1500  # 300 answers from each of 5 models (SOURCE.md)
    np.testing.assert_array_equal(suite.unsafe, answer_is_unsafe(suite.prompt_unsafe, suite.refusal))
    sample = load_xstest(XSTEST_DIR, max_rows=50, seed=0)
    assert len(sample.prompts) == 50 and sample.rows_read == 1500


def test_pairs_with_a_prompt_column_and_renamed_columns(tmp_path):
    path = write_jsonl(tmp_path / "p.jsonl", [{"question": "q1", "good": "a", "bad": "b"}])
    suite = load_pairs(path, columns={"prompt": "question", "chosen": "good", "rejected": "bad"})
    assert (suite.format, suite.prompts, suite.chosen, suite.rejected) == ("prompt-chosen-rejected", ["q1"], ["a"], ["b"])


def test_csv_answers_and_refusals_with_a_gold_answer_column(tmp_path):
    pd.DataFrame({"prompt": ["p1", "p2"], "response": ["r1", ""], "label": ["1", "safe"]}).to_csv(
        tmp_path / "a.csv", index=False)
    suite = load_answers(tmp_path / "a.csv")
    assert suite.responses == ["r1", ""] and suite.unsafe.tolist() == [True, False]
    rows = [{"prompt": "p", "response": "r", "prompt_label": "unsafe", "refusal": refusal, "gold_answer": gold}
            for refusal, gold in ((True, "safe"), (False, "safe"))]  # the file's gold wins over the derived label
    assert load_refusals(write_jsonl(tmp_path / "r.jsonl", rows)).unsafe.tolist() == [False, False]


# ---- the API and the CLI on a tiny reward model -------------------------------------------------------------------


def test_cli_writes_the_numbers_the_api_returns(model, model_dir, answers_file, refusals_file, tmp_path, capsys):
    out = tmp_path / "eval"
    argv = ["evaluate", "--model", model_dir, "--device", "cpu", "--out", str(out), "--pairs", str(HH_FILE),
            "--max-pairs", "40", "--answers", str(answers_file), "--refusals", str(refusals_file),
            "--xstest", str(XSTEST_DIR), "--max-rows", "60", "--resamples", "200"]
    assert main(argv) == 0
    stdout = capsys.readouterr().out
    assert "pairs    test.jsonl.gz: accuracy" in stdout and f"evaluation: {out / 'evaluation.json'}" in stdout
    written = json.loads((out / "evaluation.json").read_text())
    assert [s["kind"] for s in written["suites"]] == ["pairs", "answers", "refusals", "refusals"]
    assert written["model"]["path"] == model_dir and written["bootstrap"] == {"confidence": 0.9, "resamples": 200,
                                                                              "seed": 0}
    assert written["inputs"]["pairs"] == [str(HH_FILE)] and set(written["timings"]) >= {"total_s", "load_model_s"}

    suites = [load_pairs(HH_FILE, max_pairs=40), load_answers(answers_file), load_xstest(XSTEST_DIR, max_rows=60),
              load_refusals(refusals_file)]  # the CLI's order: pairs, answers, xstest, refusals, refine runs
    api = evaluate_reward_model(model, suites, resamples=200)
    assert [s["name"] for s in written["suites"]] == ["test.jsonl.gz", "answers.jsonl", "xstest", "refusals.jsonl"]
    for cli_suite, api_suite in zip(written["suites"], api["suites"], strict=True):
        assert_close(cli_suite["metrics"], api_suite["metrics"])
    # Independently of the evaluation code: rewards of the pairs through the model's own template.
    pairs = suites[0]
    wins = model.score_pairs(pairs.prompts, pairs.chosen) - model.score_pairs(pairs.prompts, pairs.rejected)
    assert written["suites"][0]["metrics"]["accuracy"] == pytest.approx((wins > 0).mean() + 0.5 * (wins == 0).mean())
    threshold = model.metadata.threshold
    assert threshold is not None and written["model"]["threshold"] == threshold
    rewards = model.score_pairs(suites[1].prompts, suites[1].responses)
    accuracy = ((rewards < threshold) == suites[1].unsafe).mean()
    assert written["suites"][1]["metrics"]["accuracy"] == pytest.approx(accuracy)

    # A model loaded with z-normalisation decides at the normalised threshold: the same decisions, the same AUC.
    normalized = RewardModel.from_pretrained(model_dir, device="cpu", normalize=True)
    z = evaluate_reward_model(normalized, suites[1:2])
    calibration = model.metadata.calibration
    assert z["model"]["threshold"] == pytest.approx((threshold - calibration.mean) / calibration.std)
    assert_close(z["suites"][0]["metrics"], {**api["suites"][1]["metrics"], "threshold": z["model"]["threshold"]})

    markdown = (out / "evaluation.md").read_text()
    assert markdown == evaluation_markdown(written)
    assert markdown.startswith("# Evaluation") and "## Preference pairs" in markdown and "| test.jsonl.gz | 40 |" in markdown


def test_overwrite_and_model_card(model_dir, answers_file, tmp_path, capsys):
    folder = tmp_path / "model"
    shutil.copytree(model_dir, folder)
    before = (folder / "README.md").read_text()
    out = tmp_path / "eval"
    argv = ["evaluate", "--model", str(folder), "--out", str(out), "--answers", str(answers_file), "--card",
            "--resamples", "50"]
    assert main(argv) == 0
    card = (folder / "README.md").read_text()
    assert card.startswith(before.rstrip("\n")) and card.count("## Evaluation") == 1
    assert "### Labelled answers" in card and "| answers.jsonl | 16 |" in card
    capsys.readouterr()
    assert main(argv) == 1  # the results are there: refused without --overwrite
    assert "pass --overwrite" in capsys.readouterr().err
    assert main(argv + ["--overwrite"]) == 0
    assert (folder / "README.md").read_text() == card  # replaced, not appended a second time


def test_a_classifier_without_silr_metadata_needs_a_direction(model, model_dir, answers_file, tmp_path, capsys):
    folder = tmp_path / "plain"
    shutil.copytree(model_dir, folder)
    config = json.loads((folder / "config.json").read_text())
    del config["silr"]
    (folder / "config.json").write_text(json.dumps(config))
    argv = ["evaluate", "--model", str(folder), "--out", str(tmp_path / "eval"), "--answers", str(answers_file)]
    assert main(argv) == 1 and "score direction unknown" in capsys.readouterr().err
    assert main(argv + ["--higher-is-safer", "false"]) == 0
    metrics = json.loads((tmp_path / "eval" / "evaluation.json").read_text())["suites"][0]["metrics"]
    own = evaluate_reward_model(model, [load_answers(answers_file)])["suites"][0]["metrics"]
    assert metrics["roc_auc"] == pytest.approx(1 - own["roc_auc"])  # its logit read as harm: the ranking flips
    assert metrics["accuracy"] is None and "no exported threshold" in metrics["accuracy_note"]


# ---- refine runs --------------------------------------------------------------------------------------------------


def _refine_run(tmp_path: Path, tiny_reward_dirs, data: dict) -> Path:
    """A run directory holding only config.yaml: the tiny run's config with ``data`` replaced.

    ``build_tiny_run`` writes no corpus (its config names a corpus.jsonl that does not exist), so each test gives one.
    """
    config = yaml.safe_load((Path(tiny_reward_dirs["iter1"]).parent / "run" / "config.yaml").read_text())
    run = tmp_path / "run"
    run.mkdir()
    (run / "config.yaml").write_text(yaml.safe_dump({**config, "data": data}))
    return run


@pytest.mark.parametrize("pairs", [True, False], ids=["prompt-response", "text-only"])
def test_refine_run_test_split(pairs, model, model_dir, tiny_reward_dirs, tmp_path, capsys):
    from refine.config import DataConfig
    from refine.corpus import load_corpus
    from tests.reward.conftest import make_texts

    texts = make_texts(60, seed=7)
    rows = [{"prompt": "tell me", "response": t, "text": t, "unsafe": int("kill" in t or "bomb" in t)} for t in texts]
    data = {"path": str(write_jsonl(tmp_path / "corpus.jsonl", rows)), "label_columns": ["unsafe"], "num_labeled": 10,
            "test_fraction": 0.4, "seed": 3}
    if pairs:
        data.update(text_column=None, prompt_column="prompt", response_column="response")
    run = _refine_run(tmp_path, tiny_reward_dirs, data)
    suite = load_refine_run(run)
    test = load_corpus(DataConfig(**data)).query("split == 'test'")
    assert suite.rows_read == len(test) == 24 and suite.unsafe.tolist() == (test["gold"] == 1).tolist()
    expected = model.score_pairs(test["prompt"].tolist(), test["response"].tolist()) if pairs else model.score(
        test["text"].tolist())
    assert main(["evaluate", "--model", model_dir, "--out", str(tmp_path / "eval"), "--refine-run", str(run)]) == 0
    written = json.loads((tmp_path / "eval" / "evaluation.json").read_text())["suites"][0]
    assert written["format"] == ("refine-run" if pairs else "refine-run (texts)")
    assert_close(written["metrics"], answer_metrics(expected, suite.unsafe, threshold=model.metadata.threshold))


def test_refine_run_on_xstest_gives_refusal_metrics(tiny_reward_dirs, tmp_path):
    from refine.xstest import read_xstest

    data = {"format": "xstest", "path": str(XSTEST_DIR), "text_column": None, "prompt_column": "prompt",
            "response_column": "response", "label_columns": ["gold_answer"], "positive_values": ["unsafe"],
            "negative_values": ["safe"], "group_column": "prompt_id", "max_examples": 300, "num_labeled": 20}
    suite = load_refine_run(_refine_run(tmp_path, tiny_reward_dirs, data))
    assert suite.format == "refine-run (xstest)" and 50 < len(suite.prompts) < 150
    # The corpus id maps back to the same answers of read_xstest: the derived labels agree with the corpus gold.
    np.testing.assert_array_equal(suite.unsafe, answer_is_unsafe(suite.prompt_unsafe, suite.refusal))
    frame = read_xstest(XSTEST_DIR)
    assert set(suite.prompts) <= set(frame["prompt"]) and suite.prompt_unsafe.any() and suite.refusal.any()


# ---- bad input ----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("inputs", "message"),
    [
        ([], "no evaluation data; pass at least one of --pairs"),
        (["--pairs", "{tmp}/missing.jsonl"], "missing.jsonl not found; pass an existing file to --pairs"),
        (["--answers", "{tmp}/empty.jsonl"], "empty.jsonl holds no rows"),
        (["--answers", "{tmp}/nolabel.jsonl"], "column `label` not found in row 1 of {tmp}/nolabel.jsonl (found: "
         "prompt, response); set --column label=NAME"),
        (["--answers", "{tmp}/oneclass.jsonl"], "every label in column `label` of {tmp}/oneclass.jsonl is safe"),
        (["--answers", "{tmp}/badlabel.jsonl"], "holds 'maybe' in row 2"),
        (["--pairs", "{tmp}/nolabel.jsonl"], "column `chosen` not found in row 1"),
        (["--pairs", "{tmp}/notdialogue.jsonl"], "not an HH-RLHF dialogue"),
        (["--refine-run", "{tmp}"], "config.yaml not found; pass a run directory"),
        (["--answers", "{tmp}/answers.txt"], "use .jsonl or .csv"),
        (["--answers", "{tmp}/valid.jsonl", "--model", "{tmp}/pickled"], "holds only pickle weights"),
    ],
)
def test_bad_input_is_one_line_exit_1_and_writes_nothing(inputs, message, model_dir, tmp_path, capsys):
    write_jsonl(tmp_path / "nolabel.jsonl", [{"prompt": "p", "response": "r"}])
    write_jsonl(tmp_path / "oneclass.jsonl", [{"prompt": "p", "response": "r", "label": 0}] * 3)
    write_jsonl(tmp_path / "badlabel.jsonl", [{"prompt": "p", "response": "r", "label": v} for v in (1, "maybe")])
    write_jsonl(tmp_path / "notdialogue.jsonl", [{"chosen": "a", "rejected": "b"}])
    (tmp_path / "empty.jsonl").write_text("\n")
    (tmp_path / "answers.txt").write_text("x")
    (tmp_path / "pickled").mkdir()
    (tmp_path / "pickled" / "config.json").write_text("{}")
    (tmp_path / "pickled" / "pytorch_model.bin").write_bytes(b"0")
    write_jsonl(tmp_path / "valid.jsonl", [{"prompt": "p", "response": "r", "label": v} for v in (0, 1)])
    argv = ["evaluate", "--model", model_dir, "--out", str(tmp_path / "eval")] + [a.format(tmp=tmp_path) for a in inputs]
    assert main(argv) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: ") and message.format(tmp=tmp_path) in err and err.count("\n") == 1
    assert not (tmp_path / "eval").exists()


@pytest.mark.parametrize("extra", [["--higher-is-safer", "maybe"], ["--column", "answer=text"], ["--column", "x"]])
def test_usage_errors_exit_2(extra, tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["evaluate", "--model", str(tmp_path), "--out", str(tmp_path / "eval"), "--answers", "a.jsonl", *extra])
    assert exit_info.value.code == 2 and "argument" in capsys.readouterr().err
    assert not (tmp_path / "eval").exists()
