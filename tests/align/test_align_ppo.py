"""align.ppo through `python -m align ppo`: resumable runs, refusal of changed configs, LoRA, bad reward models."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from align.cli import main


def _stage(config: dict, variant: str = "ours_50", seed: int = 0) -> Path:
    return Path(config["output_dir"]) / "ppo" / variant / f"seed_{seed}"


def test_finished_run_is_not_redone_and_changed_config_is_refused(make_config, monkeypatch, capsys):
    config, path = make_config()
    assert main(["ppo", "--config", path]) == 0
    train = json.loads((_stage(config) / "train.json").read_text())
    assert train["updates"] == 2 and train["episodes"] == 4 and train["world_size"] == 1
    assert set(train["final"]) == {"objective/scores", "objective/kl"}

    import trl.experimental.ppo

    def no_training(*args, **kwargs):
        raise AssertionError("a finished PPO run must not be trained again")

    monkeypatch.setattr(trl.experimental.ppo.PPOTrainer, "train", no_training)
    assert main(["ppo", "--config", path]) == 0

    capsys.readouterr()
    assert main(["ppo", "--config", path, "--ppo.learning_rate", "2e-4"]) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert "holds results of a different config (ppo.learning_rate: 0.0001 → 0.0002)" in err
    assert "--overwrite_output_dir" in err
    assert (_stage(config) / "policy").is_dir()  # the finished run is untouched


def test_lora_policy_saves_adapters_and_evaluates(make_config):
    config, path = make_config(**{"policy.use_lora": True, "policy.lora_r": 4})
    assert main(["ppo", "--config", path]) == 0
    policy = _stage(config) / "policy"
    assert (policy / "adapter_config.json").is_file() and not (policy / "model.safetensors").exists()
    assert main(["evaluate", "--config", path]) == 0
    rows = (Path(config["output_dir"]) / "evaluate" / "ours_50" / "seed_0" / "samples.jsonl").read_text().splitlines()
    assert len(rows) == 8  # 4 harmful and 4 safe prompts


def test_missing_reward_export_names_the_stage_to_run(make_config, capsys):
    config, path = make_config(**{"ppo.reward_models": {}})
    assert main(["ppo", "--config", path]) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert "stage reward/labels50 has not run; run `python -m align pipeline --config" in err
    assert "--stop_after export" in err
    assert not _stage(config).exists()


@pytest.fixture(scope="module")
def plain_classifier_dir(tmp_path_factory, tiny_bert_dir):
    """A one-logit BERT sequence classifier without silr metadata: its score direction is unknown."""
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    folder = tmp_path_factory.mktemp("plain_classifier")
    AutoModelForSequenceClassification.from_pretrained(tiny_bert_dir, num_labels=1).save_pretrained(folder)
    AutoTokenizer.from_pretrained(tiny_bert_dir).save_pretrained(folder)
    return str(folder)


def test_reward_model_of_unknown_direction_is_refused(make_config, plain_classifier_dir, capsys):
    config, path = make_config(**{"ppo.reward_models": {"ours_50": plain_classifier_dir}})
    assert main(["ppo", "--config", path]) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert err.startswith("error: score direction unknown") and "higher_is_safer" in err
    assert not _stage(config).exists() and not _stage(config).parent.exists()
    # Given the direction, the same classifier trains.
    assert main(["ppo", "--config", path, "--ppo.reward_higher_is_safer", "false"]) == 0
    assert (_stage(config) / "policy").is_dir()


def test_policy_without_chat_template_trains_on_plain_text(make_config, policy_without_chat_template, caplog):
    config, path = make_config(**{"policy.model_name_or_path": str(policy_without_chat_template)})
    assert main(["ppo", "--config", path]) == 0
    assert "no chat template: prompts are given as plain text" in caplog.text
