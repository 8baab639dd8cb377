"""align.reward_eval through `python -m align pipeline --stop_after reward_eval`: a real tiny refine run per reward,
its export evaluated on its refine test split and on HH-RLHF pairs, the model card, reruns and changed configs."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from align.cli import main

HH_PAIRS = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "hh_rlhf_harmless_test" / "test.jsonl.gz"


@pytest.fixture
def refined(make_config, pair_corpus, tiny_bert_dir) -> tuple[Path, str]:
    """A run stopped after reward_eval: refine variants labels50 (ours_50's reward) and gold (the judge), exported."""
    config, path = make_config(**{
        "variants": ["sft", "ours_50"], "ppo.reward_models": {}, "evaluate.judge": "gold", "stop_after": "reward_eval",
        "prompts.eval_sources": [pair_corpus["harmful"]], "prompts.safe_eval_sources": [pair_corpus["safe"]],
        "refine.data": pair_corpus["data"],
        "refine.annotator": {"kind": "simulated", "flip_unsafe": 0.2, "flip_safe": 0.1},
        "refine.classifier": {"model_name_or_path": tiny_bert_dir, "max_length": 32},
        "refine.train": {"num_train_epochs": 5, "batch_size": 64},
        "refine.loop": {"iterations": 1},
    })
    assert main(["pipeline", "--config", path]) == 0
    return Path(config["output_dir"]), path


def _evaluation(run: Path, name: str) -> dict:
    return json.loads((run / "reward_eval" / name / "evaluation.json").read_text())


def test_rewards_are_evaluated_before_ppo(refined):
    from reward.evaluate import answer_metrics, pair_metrics
    from reward.evaluation_data import load_pairs, load_refine_run
    from reward.model import RewardModel

    run, _ = refined
    stages = [s["stage"] for s in json.loads((run / "pipeline.json").read_text())["runs"][-1]["stages"]]
    assert stages[-2:] == ["reward_eval/ours_50", "reward_eval/judge"] and not (run / "ppo").exists()
    for name, variant in (("ours_50", "labels50"), ("judge", "gold")):
        evaluation = _evaluation(run, name)
        test, pairs = evaluation["suites"]
        # The refine run's gold test split: 12 of the 30 prompts (40%, whole groups), 4 answers each.
        assert (test["kind"], test["name"], test["metrics"]["n"]) == ("answers", f"{variant} (test split)", 48)
        assert (pairs["kind"], pairs["name"], pairs["metrics"]["n"]) == ("pairs", "test.jsonl.gz", 16)
        # The same numbers as scoring the model directly (the stage adds no step of its own).
        model = RewardModel.from_pretrained(run / "reward" / variant / "model")
        suite = load_refine_run(run / "refine" / variant)
        expected = answer_metrics(model.score_pairs(suite.prompts, suite.responses), suite.unsafe,
                                  threshold=model.metadata.threshold)
        assert test["metrics"]["roc_auc"] == pytest.approx(expected["roc_auc"], abs=1e-9)
        assert test["metrics"]["accuracy"] == pytest.approx(expected["accuracy"], abs=1e-9)
        hh = load_pairs(HH_PAIRS, max_pairs=16, seed=0)
        scores = model.score_pairs(hh.prompts * 2, hh.chosen + hh.rejected)
        assert pairs["metrics"]["accuracy"] == pair_metrics(scores[:16], scores[16:])["accuracy"]
        markdown = (run / "reward_eval" / name / "evaluation.md").read_text()
        assert markdown.startswith("# Evaluation") and f"| {variant} (test split) | 48 |" in markdown
        card = (run / "reward" / variant / "model" / "README.md").read_text()
        assert card.count("## Evaluation") == 1 and f"| {variant} (test split) | 48 |" in card
    assert np.isfinite(_evaluation(run, "judge")["model"]["threshold"])  # the gold judge's exported threshold


def test_finished_evaluations_are_skipped_and_a_changed_one_is_refused(refined, monkeypatch, capsys):
    import align.reward_eval

    run, path = refined
    card = run / "reward" / "labels50" / "model" / "README.md"
    # An export redone since its evaluation has a card without the tables; the rerun puts them back, unscored.
    text = card.read_text()
    card.write_text(text[: text.index("## Evaluation")])

    def forbidden(*args, **kwargs):
        raise AssertionError("a finished reward evaluation ran again")

    monkeypatch.setattr(align.reward_eval, "evaluate_reward_model", forbidden)
    assert main(["pipeline", "--config", path]) == 0
    assert card.read_text() == text
    runs = json.loads((run / "pipeline.json").read_text())["runs"]
    assert {s["stage"]: s["status"] for s in runs[-1]["stages"]}["reward_eval/judge"] == "skipped"

    capsys.readouterr()
    assert main(["pipeline", "--config", path, "--evaluate.reward_max_pairs", "8"]) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert f"{run / 'reward_eval' / 'ours_50'} holds results of a different config (max_pairs: 16 → 8)" in err
    assert _evaluation(run, "ours_50")["suites"][1]["metrics"]["n"] == 16  # untouched


def test_outside_reward_without_pairs_records_that_nothing_was_evaluated(make_config):
    from align.config import AlignConfig
    from align.reward_eval import load_reward_evaluations, run_reward_evals
    from refine.config_loading import load_config

    config, path = make_config(**{"evaluate.reward_pairs": None})
    run_reward_evals(load_config(AlignConfig, path))
    evaluation = _evaluation(Path(config["output_dir"]), "ours_50")
    assert evaluation["suites"] == [] and "evaluate.reward_pairs is null" in evaluation["note"]
    loaded = load_reward_evaluations(load_config(AlignConfig, path))
    assert set(loaded) == {"ours_50", "judge"}


def test_a_judge_trained_on_preference_pairs_by_the_pipeline(make_config, pair_corpus, tiny_bert_dir, tmp_path, capsys):
    """evaluate.judge: pairs trains the judge (reward train-pairs) as a stage: its training prompts leave the
    evaluation prompts, it is evaluated on its held-out pairs only, a rerun skips it and a changed setting is refused."""
    from reward.model import RewardModel
    from reward.pairs_training import pairs_source, split_pairs

    pairs = tmp_path / "pairs.jsonl"
    pairs.write_text("".join(json.dumps({"prompt": p, "chosen": "I can't help with that.", "rejected": "Sure, here."})
                             + "\n" for p in pair_corpus["prompts"][:20]))
    judge_pairs = {"pairs": str(pairs), "model_name_or_path": tiny_bert_dir, "max_length": 32, "num_train_epochs": 1,
                   "held_out_fraction": 0.3}
    config, path = make_config(**{
        "variants": ["sft", "ours_50"], "evaluate.judge": "pairs", "evaluate.judge_pairs": judge_pairs,
        "evaluate.reward_pairs": str(pairs), "stop_after": "reward_eval",
        "prompts.eval_sources": [pair_corpus["harmful"]], "prompts.safe_eval_sources": [pair_corpus["safe"]],
        "prompts.num_eval_per_source": 100})
    assert main(["pipeline", "--config", path]) == 0
    run = Path(config["output_dir"])
    stages = [s["stage"] for s in json.loads((run / "pipeline.json").read_text())["runs"][-1]["stages"]]
    assert stages.index("judge: train on pairs") < stages.index("reward_eval/judge")
    judge = run / "judge" / "pairs" / "model"
    assert RewardModel.from_pretrained(judge).metadata.source["trained_on"] == "preference pairs"
    trained, held = split_pairs(pairs_source(judge))
    evaluated = [json.loads(line)["prompt"] for line in (run / "prompts" / "eval.jsonl").read_text().splitlines()]
    assert sorted(evaluated) == sorted(set(pair_corpus["prompts"]) - set(trained.prompts))
    (suite,) = _evaluation(run, "judge")["suites"]
    assert (suite["kind"], suite["metrics"]["n"]) == ("pairs", len(held.prompts))

    assert main(["pipeline", "--config", path]) == 0
    runs = json.loads((run / "pipeline.json").read_text())["runs"]
    assert {s["stage"]: s["status"] for s in runs[-1]["stages"]}["judge: train on pairs"] == "skipped"
    capsys.readouterr()
    assert main(["pipeline", "--config", path, "--evaluate.judge_pairs.num_train_epochs", "2"]) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "holds results of a different config" in err, err


def test_a_pairs_judge_that_held_nothing_out_is_not_evaluated_on_its_training_pairs(make_config, pair_corpus,
                                                                                   tiny_bert_dir, tmp_path, capsys):
    pairs = tmp_path / "pairs.jsonl"
    pairs.write_text("".join(json.dumps({"prompt": p, "chosen": "I can't help with that.", "rejected": "Sure, here."})
                             + "\n" for p in pair_corpus["prompts"][:10]))  # half the harmful prompts
    judge_pairs = {"pairs": str(pairs), "model_name_or_path": tiny_bert_dir, "max_length": 32, "num_train_epochs": 1,
                   "held_out_fraction": 0.0}
    settings = {"variants": ["sft", "ours_50"], "evaluate.judge": "pairs", "evaluate.judge_pairs": judge_pairs,
                "evaluate.reward_pairs": str(pairs), "stop_after": "reward_eval",
                "prompts.eval_sources": [pair_corpus["harmful"]], "prompts.safe_eval_sources": [pair_corpus["safe"]]}
    config, path = make_config(**settings)
    assert main(["pipeline", "--config", path]) == 0
    run = Path(config["output_dir"])
    assert _evaluation(run, "judge")["suites"] == []  # every pair was trained on: none is evaluated
    assert [s["kind"] for s in _evaluation(run, "ours_50")["suites"]] == ["pairs"]

    # The pipeline's own judge needs its pairs file before the prompt split is made: one line, nothing written.
    missing = {**judge_pairs, "pairs": str(tmp_path / "gone.jsonl")}
    config, path = make_config(**{**settings, "evaluate.judge_pairs": missing, "name": "gone",
                                  "output_dir": str(tmp_path / "gone")})
    capsys.readouterr()
    assert main(["pipeline", "--config", path]) == 1
    errors = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error:")]  # past the bar
    assert len(errors) == 1 and "gone.jsonl not found" in errors[0], errors
    assert not (tmp_path / "gone" / "prompts").exists()
