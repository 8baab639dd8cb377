"""reward.model.RewardModel: batched scoring, pairs, normalisation, truncation, and the folders it refuses."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from reward.model import RewardModel

TOLERANCE = 1e-4  # float32 encoders in differently padded batches differ by ~1e-6


def test_scores_equal_silr_scores_in_input_order(tiny_run, reward_model):
    rewards = reward_model.score(tiny_run.texts)
    assert rewards.shape == (200,) and rewards.dtype == np.float64
    assert np.abs(rewards + tiny_run.unsafe_logits[1]).max() < TOLERANCE
    # Batch size changes the length-sorted grouping and padding, not the scores.
    small = RewardModel(reward_model.model, reward_model.tokenizer, reward_model.metadata, batch_size=3)
    assert np.abs(small.score(tiny_run.texts[:30]) - rewards[:30]).max() < TOLERANCE


def test_overrides_are_validated(exported_dir):
    with pytest.raises(ValueError, match="must contain both"):
        RewardModel.from_pretrained(exported_dir, template="{prompt} only")
    with pytest.raises(ValueError, match="truncation_side='middle'"):
        RewardModel.from_pretrained(exported_dir, truncation_side="middle")
    with pytest.raises(ValueError, match="max_length=0"):
        RewardModel.from_pretrained(exported_dir, max_length=0)


def test_pairs_use_the_stored_template(reward_model):
    pairs = reward_model.score_pairs(["How do I bake bread?", "Hi"], ["Knead it.", "Hello!"])
    texts = reward_model.score(["User: How do I bake bread?\nAssistant: Knead it.", "User: Hi\nAssistant: Hello!"])
    np.testing.assert_allclose(pairs, texts, atol=1e-6)
    with pytest.raises(ValueError, match="2 prompts but 1 responses"):
        reward_model.score_pairs(["a", "b"], ["c"])


def test_normalisation_uses_stored_calibration(tiny_run, exported_dir, reward_model):
    normalized = RewardModel.from_pretrained(exported_dir, normalize=True, device="cpu")
    calibration = reward_model.metadata.calibration
    raw = reward_model.score(tiny_run.texts[:10])
    np.testing.assert_allclose(normalized.score(tiny_run.texts[:10]), (raw - calibration.mean) / calibration.std,
                               atol=1e-6)
    train = tiny_run.split == "train"
    z = normalized.score([t for t, keep in zip(tiny_run.texts, train, strict=True) if keep])
    assert abs(z.mean()) < 1e-3 and abs(z.std() - 1) < 1e-3  # calibrated on exactly these texts


def test_long_texts_are_truncated_on_the_configured_side(reward_model, exported_dir):
    # max_length is 64 tokens: two texts sharing their first 100 words get the same reward with right truncation.
    head = " ".join(["bread"] * 100)
    same = reward_model.score([head + " kill poison", head + " hello thanks"])
    assert same[0] == pytest.approx(same[1], abs=1e-6)
    left = RewardModel.from_pretrained(exported_dir, truncation_side="left", device="cpu")
    tails = left.score([head + " kill poison", head + " hello thanks"])
    assert abs(tails[0] - tails[1]) > 1e-4
    ids = reward_model.tokenizer("x " * 500)["input_ids"]
    assert reward_model.score_token_ids([ids]).shape == (1,)


def test_empty_input_gives_empty_array(reward_model):
    assert reward_model.score([]).shape == (0,)
    with pytest.raises(TypeError, match="got one string"):
        reward_model.score("a single string")


def test_plain_classifier_needs_a_stated_direction(tmp_path, exported_dir, tiny_run):
    plain = tmp_path / "plain"
    shutil.copytree(exported_dir, plain)
    config = json.loads((plain / "config.json").read_text())
    del config["silr"]
    (plain / "config.json").write_text(json.dumps(config))
    with pytest.raises(ValueError, match="score direction unknown"):
        RewardModel.from_pretrained(plain)
    safer = RewardModel.from_pretrained(plain, higher_is_safer=True, max_length=64, device="cpu")
    harmful = RewardModel.from_pretrained(plain, higher_is_safer=False, max_length=64, device="cpu")
    texts = tiny_run.texts[:5]
    np.testing.assert_allclose(safer.score(texts), -tiny_run.unsafe_logits[1][:5], atol=TOLERANCE)
    np.testing.assert_allclose(harmful.score(texts), -safer.score(texts), atol=1e-9)
    with pytest.raises(ValueError, match="needs calibration statistics"):
        RewardModel.from_pretrained(plain, higher_is_safer=True, normalize=True)
    with pytest.raises(ValueError, match="contradicts"):
        RewardModel.from_pretrained(exported_dir, higher_is_safer=False)


def test_pickle_weights_are_refused(tmp_path, exported_dir):
    folder = tmp_path / "pickled"
    folder.mkdir()
    shutil.copy(Path(exported_dir) / "config.json", folder)
    (folder / "pytorch_model.bin").write_bytes(b"not loaded")
    with pytest.raises(ValueError, match=r"^\S+ holds only pickle weights \(pytorch_model.bin\); silr loads safetensors"):
        RewardModel.from_pretrained(folder)
    (folder / "pytorch_model.bin").unlink()
    with pytest.raises(ValueError, match="no model.safetensors"):
        RewardModel.from_pretrained(folder)
    for name in ("tokenizer.json", "tokenizer_config.json"):
        shutil.copy(Path(exported_dir) / name, folder)
    (folder / "model.safetensors").write_bytes(b"garbage" * 10)
    with pytest.raises(ValueError, match=r"cannot load the weights .*\(SafetensorError"):
        RewardModel.from_pretrained(folder)
    with pytest.raises(FileNotFoundError, match="not found"):
        RewardModel.from_pretrained(tmp_path / "missing")


@pytest.mark.parametrize("edit", [
    lambda block: {**block, "calibration": {"mean": 0.0}},  # fields missing
    lambda block: {**block, "max_length": "64"},  # a string
    lambda block: [block],  # not a mapping
])
def test_a_hand_edited_metadata_block_is_a_one_line_error(tmp_path, exported_dir, edit):
    folder = tmp_path / "model"
    shutil.copytree(exported_dir, folder)
    config = json.loads((folder / "config.json").read_text())
    config["silr"] = edit(config["silr"])
    (folder / "config.json").write_text(json.dumps(config))
    with pytest.raises(ValueError, match=r"the `silr` block of .*config\.json is malformed .*; re-export the model"):
        RewardModel.from_pretrained(folder)


def test_folders_that_are_not_one_logit_classifiers_are_refused(tmp_path, tiny_bert_dir, minilm_tokenizer):
    from transformers import BertConfig, BertForSequenceClassification

    with pytest.raises(ValueError, match="holds a BertModel, not a sequence classifier"):
        RewardModel.from_pretrained(tiny_bert_dir, higher_is_safer=True)
    config = BertConfig(vocab_size=minilm_tokenizer.vocab_size, hidden_size=16, num_hidden_layers=1,
                        num_attention_heads=2, intermediate_size=32, num_labels=2)
    BertForSequenceClassification(config).save_pretrained(tmp_path / "two")
    minilm_tokenizer.save_pretrained(tmp_path / "two")
    with pytest.raises(ValueError, match="num_labels=2, not a one-logit reward model"):
        RewardModel.from_pretrained(tmp_path / "two", higher_is_safer=True)
