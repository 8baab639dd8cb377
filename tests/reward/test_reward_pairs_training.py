"""`python -m reward train-pairs`: a Bradley-Terry reward model trained with TRL's RewardTrainer on preference pairs
(tiny BERT with the real MiniLM tokenizer, real files), its split, threshold, folder and bad input."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from reward.cli import main
from reward.pairs_training import best_threshold, held_out_mask, pairs_source, split_pairs, training_prompts

REFUSALS = ["I'm sorry, but I can't help with that.", "I cannot assist with this request, it could hurt people."]
COMPLIANCES = ["Sure! First you buy the parts, then you mix them.", "Of course, here is a step by step plan."]


def write_pairs(path: Path, n_prompts: int = 40) -> list[dict]:
    """Pairs whose chosen answer is a refusal and rejected one a compliance, two per prompt."""
    rows = [{"prompt": f"Tell me how to commit crime number {i} without getting caught", "chosen": REFUSALS[k],
             "rejected": COMPLIANCES[k]} for i in range(n_prompts) for k in range(2)]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return rows


@pytest.fixture(scope="module")
def trained(tmp_path_factory, tiny_bert_dir):
    folder = tmp_path_factory.mktemp("train_pairs")
    rows = write_pairs(folder / "pairs.jsonl")
    out = folder / "judge"
    code = main(["train-pairs", "--pairs", str(folder / "pairs.jsonl"), "--out", str(out), "--model", tiny_bert_dir,
                 "--max-length", "32", "--epochs", "4", "--learning-rate", "2e-3", "--batch-size", "8",
                 "--held-out-fraction", "0.25"])
    assert code == 0
    return {"out": out, "pairs": folder / "pairs.jsonl", "rows": rows}


def test_split_keeps_every_pair_of_a_prompt_together_and_is_seeded():
    prompts = [f"prompt {i // 3}" for i in range(3000)]  # 1,000 prompts, 3 pairs each
    held = held_out_mask(prompts, 0.2, seed=0)
    by_prompt = {}
    for prompt, flag in zip(prompts, held, strict=True):
        by_prompt.setdefault(prompt, set()).add(bool(flag))
    assert all(len(flags) == 1 for flags in by_prompt.values())
    assert 0.15 < held.mean() < 0.25
    assert not held_out_mask(prompts, 0.0, seed=0).any()
    assert (held_out_mask(prompts, 0.2, seed=1) != held).any()
    np.testing.assert_array_equal(held_out_mask(prompts[::-1], 0.2, seed=0), held[::-1])  # order does not matter


def test_threshold_separates_chosen_from_rejected():
    chosen, rejected = np.array([2.0, 3.0, 0.5]), np.array([0.0, 1.0, -1.0, 1.5])
    threshold = best_threshold(chosen, rejected)
    # Judged unsafe iff reward < threshold. Between 1.5 and 2.0 only the chosen 0.5 is misread (TPR 2/3, FPR 0);
    # at 0.5 two rejected answers are (TPR 1, FPR 1/2). The threshold is the midpoint of that gap.
    assert threshold == 1.75
    assert ((chosen >= threshold).sum(), (rejected < threshold).sum()) == (2, 4)


def test_trained_folder_is_a_silr_reward_model_that_prefers_the_chosen_answers(trained):
    from reward.model import RewardModel

    out = trained["out"]
    names = {p.name for p in out.iterdir()}
    assert {"model.safetensors", "config.json", "README.md", "held_out_pairs.jsonl"} <= names
    assert not [n for n in names if n.endswith((".bin", ".pt", ".pth"))] and "checkpoints" not in names
    model = RewardModel.from_pretrained(out)
    source = model.metadata.source
    assert source["trained_on"] == "preference pairs" and source["train_pairs"] + source["held_out_pairs"] == 80
    held = [json.loads(line) for line in (out / "held_out_pairs.jsonl").read_text().splitlines()]
    assert len(held) == source["held_out_pairs"] > 0
    train_prompts = set(training_prompts(pairs_source(out)))
    assert not train_prompts & {r["prompt"] for r in held}  # split by prompt
    assert len(train_prompts) + len({r["prompt"] for r in held}) == 40
    chosen = model.score_pairs([r["prompt"] for r in held], [r["chosen"] for r in held])
    rejected = model.score_pairs([r["prompt"] for r in held], [r["rejected"] for r in held])
    assert (chosen > rejected).mean() == 1.0 == source["held_out_accuracy"]
    # The threshold sits between the two kinds of answers: refusals are safe, compliances unsafe.
    assert (chosen >= model.metadata.threshold).all() and (rejected < model.metadata.threshold).all()
    assert "held-out pairs" in (out / "README.md").read_text()


def test_split_is_rebuilt_from_the_source_block(trained):
    train, held = split_pairs(pairs_source(trained["out"]))
    written = [json.loads(line)["prompt"] for line in (trained["out"] / "held_out_pairs.jsonl").read_text().splitlines()]
    assert held.prompts == written
    assert len(train.prompts) == pairs_source(trained["out"])["train_pairs"]


def test_an_export_of_a_refine_run_is_not_a_pairs_model(exported_dir):
    assert pairs_source(exported_dir) is None


@pytest.mark.parametrize(
    ("setup", "extra", "message"),
    [
        ("missing", [], "missing.jsonl not found"),
        ("empty", [], "holds no rows"),
        ("no_rejected", [], "column `rejected` not found"),
        ("good", ["--held-out-fraction", "1.0"], "held_out_fraction=1.0 must lie in [0, 1)"),
        ("identical", [], "only 0 training pair(s) differ"),
        ("good", ["--max-length", "0"], "max_length=0 must be positive"),
    ],
)
def test_bad_input_is_one_line_exit_1_and_writes_nothing(setup, extra, message, tmp_path, tiny_bert_dir, capsys):
    pairs = tmp_path / ("missing.jsonl" if setup == "missing" else "pairs.jsonl")
    if setup == "empty":
        pairs.write_text("")
    elif setup == "no_rejected":
        pairs.write_text(json.dumps({"prompt": "p", "chosen": "a", "bad": "b"}) + "\n")
    elif setup == "identical":
        pairs.write_text("".join(json.dumps({"prompt": f"p{i}", "chosen": "same", "rejected": "same"}) + "\n"
                                 for i in range(8)))
    elif setup == "good":
        write_pairs(pairs, n_prompts=4)
    out = tmp_path / "judge"
    code = main(["train-pairs", "--pairs", str(pairs), "--out", str(out), "--model", tiny_bert_dir, *extra])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 1
    assert len(err) == 1 and message in err[0], err
    assert not out.exists() and [p.name for p in tmp_path.iterdir() if p.name != pairs.name] == []


def test_a_folder_that_is_not_a_silr_model_is_never_replaced(tmp_path, tiny_bert_dir, capsys):
    pairs = tmp_path / "pairs.jsonl"
    write_pairs(pairs, n_prompts=4)
    out = tmp_path / "mine"
    out.mkdir()
    (out / "notes.txt").write_text("keep me")
    code = main(["train-pairs", "--pairs", str(pairs), "--out", str(out), "--model", tiny_bert_dir, "--overwrite"])
    assert code == 1 and "is not a silr reward model folder" in capsys.readouterr().err
    assert (out / "notes.txt").read_text() == "keep me"
