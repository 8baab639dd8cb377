"""The refine summary: which iteration is exported, and whether it beats the classifiers trained on L alone."""

from __future__ import annotations

import pandas as pd

from refine.report import best_iteration, format_table, summarise


def table(labeled, test):
    return pd.DataFrame({"iteration": range(len(labeled)), "labeled_accuracy": labeled, "test_accuracy": test,
                         "signal": ["informative"] * len(labeled)})


BASELINES = {"labeled_logreg": {"accuracy": 0.75}, "labeled_head": {"accuracy": 0.70}, "majority": {"accuracy": 0.6}}


def test_the_best_iteration_on_L_is_compared_with_the_strongest_L_only_baseline():
    """Iteration 1 is best on L (0.84) and beats the strongest L-only baseline on test (0.80 > 0.75); the last
    iteration drifted below it (0.65). The verdict is for the exported (best) iteration, not the last."""
    summary = summarise(table([0.70, 0.84, 0.80, 0.62], [0.72, 0.80, 0.77, 0.65]), BASELINES)
    assert summary["best_iteration"] == 1 and summary["best_test_accuracy"] == 0.80
    assert summary["final_test_accuracy"] == 0.65
    assert summary["labeled_only_test_accuracy"] == 0.75 and summary["beats_labeled_only"] is True


def test_a_best_iteration_below_the_L_only_baseline_does_not_beat_it():
    summary = summarise(table([0.70, 0.72, 0.74], [0.72, 0.73, 0.74]), BASELINES)
    assert summary["best_iteration"] == 2 and summary["beats_labeled_only"] is False


def test_ties_on_L_go_to_the_later_iteration_and_iteration_0_is_never_chosen():
    assert best_iteration(table([0.99, 0.8, 0.8], [0.7, 0.7, 0.7])) == 2
    assert best_iteration(table([0.9], [0.7])) == 0


def test_the_printed_table_names_the_exported_iteration_and_the_verdict():
    text = format_table(table([0.70, 0.84, 0.80, 0.62], [0.72, 0.80, 0.77, 0.65]), BASELINES)
    assert "exported by default: iteration 1 (the best on L), test acc 0.800" in text
    assert "vs the annotator's own labels: +0.080" in text
    assert "it beats the strongest classifier trained on L alone (0.750)" in text
    text = format_table(table([0.70, 0.72], [0.72, 0.70]), BASELINES)
    assert "-0.020" in text and "does NOT beat" in text
