"""End-to-end refine runs on a tiny BERT: outputs, determinism, resume, and refusal to mix configs."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

import refine.loop as loop
from refine.config import RefineConfig
from refine.config_loading import load_config
from refine.loop import NoSignalError, run_refine
from refine.rundir import RunConflictError

RESUME_SCORE_ATOL = 1e-5  # scores of a resumed iteration vs an uninterrupted run (README, "Run directory")


def config_for(args: list[str], *extra: str) -> RefineConfig:
    return load_config(RefineConfig, None, [*args, *extra])


def final_labels(run_dir, iteration: int = 2) -> np.ndarray:
    return pd.read_parquet(run_dir / "refine" / f"iter_{iteration}" / "labels.parquet")["pseudo_label"].to_numpy()


def test_a_run_writes_every_iteration_and_the_report(refine_args, tmp_path):
    table = run_refine(config_for(refine_args))
    run = tmp_path / "run"
    assert table["iteration"].tolist() == [0, 1, 2]
    for k in (0, 1, 2):
        assert (run / "refine" / f"iter_{k}" / "metrics.json").is_file()
    for name in ("metrics.csv", "summary.json", "baselines.json", "accuracy.png", "priors.png", "flips.png"):
        assert (run / "refine" / name).is_file(), name
    assert (run / "config.yaml").is_file() and (run / "annotate" / "labels.parquet").is_file()
    assert (run / "refine" / "iter_1" / "classifier" / "head.safetensors").is_file()
    metrics = pd.read_csv(run / "refine" / "metrics.csv")
    # 240 texts, 25% of gold rows in test: 60 test texts; L has 30 members.
    assert (metrics["test_n"] == 60).all() and (metrics["n_labeled"] == 30).all()
    assert metrics["theta1_lo"].le(metrics["theta1"]).all() and metrics["theta1"].le(metrics["theta1_hi"]).all()
    baselines = json.loads((run / "refine" / "baselines.json").read_text())
    assert {"majority", "labeled_logreg", "labeled_head", "gold_head"} <= set(baselines)
    summary = json.loads((run / "refine" / "summary.json").read_text())
    assert summary["iterations_run"] == 2 and summary["annotator_signal"] in ("informative", "weak")


def test_the_same_seed_gives_the_same_labels(refine_args, tmp_path):
    run_refine(config_for(refine_args))
    other = [*refine_args[:1], str(tmp_path / "again"), *refine_args[2:]]
    run_refine(config_for(other))
    assert np.array_equal(final_labels(tmp_path / "run"), final_labels(tmp_path / "again"))
    scores = [pd.read_parquet(d / "refine" / "iter_2" / "labels.parquet")["score"] for d in (tmp_path / "run", tmp_path / "again")]
    np.testing.assert_array_equal(scores[0], scores[1])


def test_a_failed_rerun_keeps_the_finished_runs_summary(refine_args, tmp_path, monkeypatch):
    """summary.json names the run's last and best iterations. While a longer rerun goes on it is set aside (it must
    not send `reward export` to iterations the rerun may not reach); when the rerun fails, the finished run's summary
    is put back, so `reward export --iteration best` still works (it used to be deleted for good)."""
    from reward.export import resolve_iteration

    run_refine(config_for(refine_args, "--loop.iterations", "1"))
    summary = tmp_path / "run" / "refine" / "summary.json"
    before = summary.read_text()
    assert json.loads(before)["iterations_run"] == 1

    def interrupt(*args, **kwargs):
        assert not summary.exists()  # set aside while the rerun runs
        raise KeyboardInterrupt("simulated interruption during iteration 2")

    monkeypatch.setattr(loop, "train_classifier", interrupt)
    with pytest.raises(KeyboardInterrupt):
        run_refine(config_for(refine_args, "--loop.iterations", "2"))
    assert summary.read_text() == before
    assert resolve_iteration(tmp_path / "run", "best") == 1 and resolve_iteration(tmp_path / "run", "last") == 1
    assert (tmp_path / "run" / "refine" / "iter_1" / "metrics.json").is_file()  # finished work is kept
    monkeypatch.undo()
    run_refine(config_for(refine_args, "--loop.iterations", "2"))  # the rerun ends: its own summary, nothing aside
    assert json.loads(summary.read_text())["iterations_run"] == 2
    assert not (tmp_path / "run" / "refine" / loop.PREVIOUS_SUMMARY_FILE).exists()


def test_an_interrupted_run_resumes_to_the_same_result(refine_args, tmp_path, monkeypatch):
    reference_args = [*refine_args[:1], str(tmp_path / "uninterrupted"), *refine_args[2:]]
    run_refine(config_for(reference_args))

    real_train = loop.train_classifier
    calls = []

    def interrupt_on_second_iteration(*args, **kwargs):
        calls.append(kwargs["seed"])
        if len(calls) == 2:
            raise KeyboardInterrupt("simulated interruption during iteration 2")
        return real_train(*args, **kwargs)

    monkeypatch.setattr(loop, "train_classifier", interrupt_on_second_iteration)
    with pytest.raises(KeyboardInterrupt):
        run_refine(config_for(refine_args))
    run = tmp_path / "run"
    assert (run / "refine" / "iter_1" / "metrics.json").is_file()
    assert not (run / "refine" / "iter_2").exists()  # nothing half-written
    assert not list((run / "refine").glob(".iter_2*"))  # no temporary folder left either

    resumed_calls = []
    monkeypatch.setattr(loop, "train_classifier", lambda *a, **k: resumed_calls.append(k["seed"]) or real_train(*a, **k))
    run_refine(config_for(refine_args))
    assert len(resumed_calls) == 1  # only iteration 2 was trained again
    assert np.array_equal(final_labels(run), final_labels(tmp_path / "uninterrupted"))
    pd.testing.assert_frame_equal(
        pd.read_csv(run / "refine" / "metrics.csv"), pd.read_csv(tmp_path / "uninterrupted" / "refine" / "metrics.csv")
    )
    # The promise (README): identical labels, priors and metrics; scores equal to RESUME_SCORE_ATOL. A resumed run in
    # a new process may sum in another order (BLAS threads): once in 14 probed resumes, scores moved by 2.4e-6.
    def scores(folder):
        return pd.read_parquet(folder / "refine" / "iter_2" / "labels.parquet")["score"].to_numpy()

    np.testing.assert_allclose(scores(run), scores(tmp_path / "uninterrupted"), rtol=0, atol=RESUME_SCORE_ATOL)


def test_a_finished_run_is_not_recomputed_and_can_be_extended(refine_args, monkeypatch, tmp_path):
    run_refine(config_for(refine_args))
    real_train = loop.train_classifier
    calls = []
    monkeypatch.setattr(loop, "train_classifier", lambda *a, **k: calls.append(k["seed"]) or real_train(*a, **k))
    run_refine(config_for(refine_args))
    assert calls == []
    table = run_refine(config_for(refine_args, "--loop.iterations", "3"))  # more iterations: only the new one runs
    assert len(calls) == 1 and table["iteration"].tolist() == [0, 1, 2, 3]


def test_a_changed_config_is_refused_unless_told_to_start_over(refine_args):
    run_refine(config_for(refine_args))
    with pytest.raises(RunConflictError, match=r"train\.learning_rate: 0\.01 → 0\.02.*--overwrite_output_dir"):
        run_refine(config_for(refine_args, "--train.learning_rate", "0.02"))
    table = run_refine(config_for(refine_args, "--train.learning_rate", "0.02", "--overwrite_output_dir"))
    assert table["iteration"].tolist() == [0, 1, 2]


def noise_annotated_corpus(folder) -> str:
    """A corpus whose pseudo-labels are drawn independently of the gold labels (theta1 ≈ theta2)."""
    from tests.refine.conftest import make_corpus

    frame = make_corpus(400, seed=3)
    frame["llm"] = np.random.default_rng(9).integers(0, 2, len(frame))
    frame.to_csv(folder / "noise.csv", index=False)
    return str(folder / "noise.csv")


def test_an_annotator_without_signal_stops_the_run(tmp_path, refine_args):
    args = [*refine_args, "--data.path", noise_annotated_corpus(tmp_path), "--data.num_labeled", "200",
            "--priors.min_prior_gap", "0.3"]
    with pytest.raises(NoSignalError, match=r"carry no usable signal: theta1=.*theta2=.*90% bootstrap intervals"):
        run_refine(config_for(args))
    assert not (tmp_path / "run").exists()  # a fresh run that produced nothing leaves nothing behind


def test_an_annotator_whose_signal_the_labelled_set_cannot_confirm_stops_unless_told(tmp_path, refine_args):
    # Judged on 40 labels, the gap of independent pseudo-labels clears min_prior_gap (0.01) by chance, but its
    # bootstrap interval includes 0.
    args = [*refine_args, "--data.path", noise_annotated_corpus(tmp_path), "--data.num_labeled", "40",
            "--priors.min_prior_gap", "0.01"]
    with pytest.raises(NoSignalError, match=r"may carry no signal: theta1 - theta2 = .* interval \[-.*\] that "
                                            r"includes 0.*priors.unconfirmed_signal: warn"):
        run_refine(config_for(args))
    assert not (tmp_path / "run").exists()
    table = run_refine(config_for(args, "--priors.unconfirmed_signal", "warn"))
    assert table["signal"].iloc[0] == "weak" and table["iteration"].iloc[-1] >= 1


@pytest.mark.parametrize("num_labeled", [2, 4])
def test_priors_from_too_few_labelled_texts_are_no_evidence_and_stop_the_run(tmp_path, refine_args, num_labeled,
                                                                              caplog):
    """With 2 or 4 labels, U1 or U2 holds fewer than 3 of them: theta comes from add-one smoothing alone (0.5 from no
    text at all, with a bootstrap interval of zero width), which used to pass the signal check."""
    args = [*refine_args, "--data.num_labeled", str(num_labeled)]
    with pytest.raises(NoSignalError, match=r"no evidence for the priors of the annotator's labels: only \d text\(s\) "
                                            r"of L are pseudo-unsafe and \d pseudo-safe \(priors.min_labeled_per_set=3\)"):
        run_refine(config_for(args))
    assert not (tmp_path / "run").exists()
    table = run_refine(config_for(args, "--priors.unconfirmed_signal", "warn", "--loop.iterations", "1"))
    assert table["iteration"].tolist() == [0, 1]
    assert any("no evidence for the priors" in r.getMessage() for r in caplog.records)


def test_labels_that_lose_their_signal_stop_the_run_with_a_report(refine_args, tmp_path, monkeypatch, caplog):
    """Iteration 1's classifier scores at random (a stand-in for a run whose relabelling lost the signal): the loop
    stops after iteration 1 with a warning, and still writes its metrics, baselines and report."""
    real_train = loop.train_classifier

    def random_scores(*args, **kwargs):
        trained = real_train(*args, **kwargs)
        trained.scores = np.random.default_rng(0).normal(size=len(trained.scores))
        return trained

    monkeypatch.setattr(loop, "train_classifier", random_scores)
    table = run_refine(config_for(refine_args, "--priors.min_prior_gap", "0.3", "--loop.iterations", "3"))
    assert table["iteration"].tolist() == [0, 1] and table["signal"].tolist()[1] == "none"
    assert "iteration 1 carry no usable signal" in caplog.text
    summary = json.loads((tmp_path / "run" / "refine" / "summary.json").read_text())
    assert summary["iterations_run"] == 1 and (tmp_path / "run" / "refine" / "baselines.json").is_file()
    assert not (tmp_path / "run" / "refine" / "iter_2").exists()


def first_iteration_scores(refine_args, output_dir, loss: str, *extra: str) -> np.ndarray:
    """Iteration 1's unsafe_logit of every text, from a one-iteration run with ``loss`` in ``output_dir``."""
    args = [*refine_args[:1], str(output_dir), *refine_args[2:], "--cache_dir", str(output_dir.parent / "cache"),
            "--train.loss", loss, "--loop.iterations", "1", *extra]
    table = run_refine(config_for(args))
    assert table["iteration"].tolist() == [0, 1]
    return pd.read_parquet(output_dir / "refine" / "iter_1" / "labels.parquet")["score"].to_numpy()


@pytest.mark.parametrize(("loss", "other_loss"), [("pn", "robust_uu"), ("uu", "pn")])
def test_losses_on_pseudo_labels_each_train_their_own_classifier(loss, other_loss, refine_args, tmp_path):
    """Were train.loss ignored, both runs would train the same classifier. uu is compared with pn, not robust_uu:
    the two UU risks agree until a partial risk turns negative."""
    scores = first_iteration_scores(refine_args, tmp_path / "run", loss)
    other = first_iteration_scores(refine_args, tmp_path / "other", other_loss)
    assert np.abs(scores - other).max() > 0.01


@pytest.mark.parametrize("loss", ["gold", "labeled"])
def test_losses_on_gold_labels_never_read_the_pseudo_labels(loss, refine_args, corpus_csv, tmp_path):
    frame = pd.read_csv(corpus_csv)
    # A second, better annotator: the first one with a quarter of its rows set to the gold label.
    frame["other"] = np.where(np.arange(len(frame)) % 4 == 0, frame["label"], frame["llm"])
    assert (frame["other"] != frame["llm"]).sum() >= 5
    frame.to_csv(corpus_csv, index=False)
    scores = first_iteration_scores(refine_args, tmp_path / "run", loss)
    other = first_iteration_scores(refine_args, tmp_path / "other", loss, "--annotator.column", "other")
    np.testing.assert_array_equal(scores, other)  # a loss on the pseudo-labels would follow the annotator
    history = json.loads((tmp_path / "run" / "refine" / "iter_1" / "history.json").read_text())
    # gold trains on the training rows and keeps the epoch best on the validation rows; labeled trains on L alone.
    assert ("validation_risk" in history[0]) == (loss == "gold") and "labeled_risk" in history[0]


def test_patience_stops_a_run_whose_accuracy_on_L_stops_improving(refine_args, tmp_path, monkeypatch, caplog):
    """From iteration 2 on, the classifier repeats iteration 1's scores, so the accuracy on L cannot improve: with
    loop.patience 1 the run stops after iteration 2; without patience it runs all 4."""
    real_train = loop.train_classifier
    first_scores = []

    def repeat_first_scores(*args, **kwargs):
        trained = real_train(*args, **kwargs)
        if first_scores:
            trained.scores = first_scores[0].copy()
        else:
            first_scores.append(trained.scores.copy())
        return trained

    monkeypatch.setattr(loop, "train_classifier", repeat_first_scores)
    caplog.set_level("INFO", logger="refine.loop")
    table = run_refine(config_for(refine_args, "--loop.iterations", "4", "--loop.patience", "1"))
    assert table["iteration"].tolist() == [0, 1, 2]
    assert "accuracy on L has not improved for 1 iteration(s)" in caplog.text
    summary = json.loads((tmp_path / "run" / "refine" / "summary.json").read_text())
    assert summary["iterations_run"] == 2 and summary["best_iteration"] == 2  # a tie goes to the later iteration

    first_scores.clear()
    table = run_refine(config_for(refine_args, "--loop.iterations", "4", "--overwrite_output_dir"))
    assert table["iteration"].tolist() == [0, 1, 2, 3, 4]


def test_patience_is_ignored_while_L_is_trained_on(refine_args, caplog):
    table = run_refine(config_for(refine_args, "--loop.patience", "1", "--train.labeled_weight", "5"))
    assert table["iteration"].tolist() == [0, 1, 2]
    assert "loop.patience is ignored: L is trained on" in caplog.text


def test_texts_the_annotator_abstained_on_are_left_out_until_iteration_1_labels_them(refine_args, tmp_path):
    from tests.refine.conftest import make_corpus

    frame = make_corpus().astype({"llm": object})
    frame.loc[::12, "llm"] = "I'm sorry, I can't rate that."  # 20 of 240 replies are no class
    path = tmp_path / "judged.csv"
    frame.to_csv(path, index=False)
    args = [*refine_args, "--data.path", str(path), "--annotator.column_positive_values", "[1]",
            "--annotator.column_negative_values", "[0]", "--annotator.column_other", "abstain"]
    run_refine(config_for(args))
    run = tmp_path / "run" / "refine"
    first = final_labels(tmp_path / "run", 0)
    assert (first == -1).sum() == 20 and set(first[first >= 0]) == {0, 1}
    row = json.loads((run / "iter_0" / "metrics.json").read_text())
    corpus = pd.read_parquet(run / "iter_0" / "labels.parquet")
    answered_train = (corpus["split"] == "train") & (corpus["pseudo_label"] >= 0)
    assert row["abstained"] == 20
    assert row["rho"] == pytest.approx(corpus.loc[answered_train, "pseudo_label"].mean())
    assert row["test_n"] == ((corpus["split"] == "test") & (corpus["pseudo_label"] >= 0)).sum() < 60
    for k in (1, 2):  # the classifiers label every text, abstentions included
        assert set(final_labels(tmp_path / "run", k)) == {0, 1}
        assert "abstained" not in json.loads((run / f"iter_{k}" / "metrics.json").read_text())
