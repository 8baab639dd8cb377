"""align with GRPO and RLOO (trl.GRPOTrainer / trl.RLOOTrainer) on tiny models: the whole pipeline with a real
update, resume and refusal rules, what the reward function sees, LoRA, and bad input."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
import torch
from safetensors.torch import load_file

import align.grpo_rloo
from align.cli import main
from align.config import AlignConfig, PolicyConfig, check_algorithm_overrides
from align.policy import PromptFormatter, load_tokenizer, policy_folder_with_pad
from refine.config_loading import load_config, parse_overrides
from tests.align.conftest import TRAIN_PROMPTS

# Per update: 4 completions = 2 prompts x 2 (num_generations); 2 updates. lr 1e-3 so one update visibly moves weights.
GROUP = {"max_completion_length": 8, "num_generations": 2, "per_device_train_batch_size": 4, "max_steps": 2,
         "beta": 0.05, "learning_rate": 1e-3}
TRAINER_CLASSES = {"grpo": "GRPOTrainer", "rloo": "RLOOTrainer"}


def group_config(make_config, algorithm: str, **extra):
    return make_config(algorithm=algorithm, **{**{f"{algorithm}.{key}": value for key, value in GROUP.items()}, **extra})


def _one_line_error(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    return err


@pytest.mark.parametrize("algorithm", ["grpo", "rloo"])
def test_pipeline_trains_evaluates_and_reports_then_resumes(algorithm, make_config, monkeypatch, capsys):
    # Answers as long as training's, so that only the trained policies' evaluations depend on the algorithm.
    config, path = group_config(make_config, algorithm, **{"evaluate.max_new_tokens": 8})
    run = Path(config["output_dir"])
    assert main(["pipeline", "--config", path]) == 0

    folder = run / algorithm / "ours_50" / "seed_0"
    train = json.loads((folder / "train.json").read_text())
    assert (train["algorithm"], train["trainer"]) == (algorithm, f"trl.{TRAINER_CLASSES[algorithm]}")
    assert train["updates"] == 2 and train["episodes"] == 8 and train["world_size"] == 1  # 2 updates x 4 completions
    assert {"reward", "kl"} <= set(train["final"])  # beta > 0: TRL logs the KL
    metrics = pd.read_csv(folder / "metrics.csv")
    assert {"reward", "kl", "rewards/silr_safety/mean", "completions/mean_length"} <= set(metrics.columns)
    assert list(metrics["step"]) == [1, 2]
    policy = folder / "policy"
    assert (policy / "model.safetensors").is_file() and not (policy / "training_args.bin").exists()
    # One real update changed the weights of the SFT policy (the folder with its pad token, as TRL loaded it).
    sft = load_file(Path(policy_folder_with_pad(PolicyConfig(**config["policy"]))) / "model.safetensors")
    trained = load_file(policy / "model.safetensors")
    assert sft.keys() == trained.keys()
    assert any(not torch.equal(sft[k], trained[k]) for k in sft)

    rows = [json.loads(x) for x in (run / "evaluate" / "ours_50" / "seed_0" / "samples.jsonl").read_text().splitlines()]
    assert len(rows) == 8 and set(rows[0]["rewards"]) == {"ours_50"}
    summary = json.loads((run / "report" / "summary.json").read_text())
    assert summary["algorithm"] == algorithm and set(summary["training_runs"]) == {"ours_50 s0"}
    markdown = (run / "report" / "report.md").read_text()
    assert f"## Training: {algorithm.upper()} (trl.{TRAINER_CLASSES[algorithm]})" in markdown
    assert f"algorithm {algorithm} (trl.{TRAINER_CLASSES[algorithm]})" in markdown
    assert (run / "report" / "training_curves.png").stat().st_size > 1000
    assert not (run / "ppo").exists()

    # A rerun with the same config trains nothing.
    import trl

    def no_training(*args, **kwargs):
        raise AssertionError("a finished run must not be trained again")

    monkeypatch.setattr(getattr(trl, TRAINER_CLASSES[algorithm]), "train", no_training)
    assert main(["pipeline", "--config", path]) == 0
    capsys.readouterr()

    # A changed setting of the algorithm is refused, naming it; so is another algorithm on the finished evaluations.
    assert main(["pipeline", "--config", path, f"--{algorithm}.learning_rate", "2e-3"]) == 1
    err = _one_line_error(capsys)
    assert f"holds results of a different config ({algorithm}.learning_rate: 0.001 → 0.002" in err
    other = "rloo" if algorithm == "grpo" else "grpo"
    assert main(["pipeline", "--config", path, "--algorithm", other]) == 1
    err = _one_line_error(capsys)
    assert "evaluate/ours_50/seed_0 holds results of a different config (trained.grpo." in err
    assert not (run / other).exists()  # refused before any work


class RecordingReward(align.grpo_rloo.RawPromptSafetyReward):
    """Records what TRL passed, and what the reward returned."""

    calls: list = []

    def __call__(self, prompts, completions, **kwargs):
        rewards = super().__call__(prompts, completions, **kwargs)
        RecordingReward.calls.append((prompts, completions, kwargs["raw_prompt"], rewards))
        return rewards


@pytest.mark.parametrize("chat_template", [True, False], ids=["chat", "plain"])
def test_reward_reads_the_raw_prompt_and_the_decoded_completion(chat_template, make_config, tiny_llama_dir,
                                                                tiny_reward_dirs, monkeypatch, request):
    from reward.model import RewardModel

    policy_dir = tiny_llama_dir if chat_template else request.getfixturevalue("policy_without_chat_template")
    config, path = group_config(make_config, "grpo", **{"policy.model_name_or_path": str(policy_dir),
                                                        "grpo.max_steps": 1})
    RecordingReward.calls = []
    monkeypatch.setattr(align.grpo_rloo, "RawPromptSafetyReward", RecordingReward)
    assert main(["train", "--config", path]) == 0

    (prompts, completions, raw, rewards), = RecordingReward.calls
    assert len(rewards) == 4 and set(raw) <= set(TRAIN_PROMPTS)
    if chat_template:  # TRL got the conversation; the reward the user's words, not the chat-rendered text
        assert [p[-1]["content"] for p in prompts] == raw
        texts = [c[0]["content"] for c in completions]
    else:  # TRL got the plain-template text
        assert prompts == [f"User: {p}\nAssistant:" for p in raw]
        texts = completions
    assert not any("<|im_end|>" in t or "<|pad|>" in t for t in texts)  # decoded without special tokens
    reward_model = RewardModel.from_pretrained(tiny_reward_dirs["iter1"])
    expected = reward_model.score_pairs(raw, [t.strip() for t in texts])
    assert rewards == pytest.approx(list(expected), abs=1e-5)


def test_trl_renders_the_prompts_as_ppo_queries(tiny_llama_dir, tmp_path):
    """GRPO/RLOO tokenize the dataset's conversations with the chat template; the ids equal PPO's query ids."""
    config = PolicyConfig(model_name_or_path=tiny_llama_dir, cache_dir=str(tmp_path), system_prompt="Be safe.")
    tokenizer = load_tokenizer(policy_folder_with_pad(config), config)
    formatter = PromptFormatter.from_config(tokenizer, config)
    rendered = tokenizer.apply_chat_template(conversation=[formatter.messages(p) for p in TRAIN_PROMPTS],
                                             add_generation_prompt=True, tokenize=True, return_dict=True)
    assert [list(ids) for ids in rendered["input_ids"]] == [formatter.token_ids(p) for p in TRAIN_PROMPTS]
    assert policy_folder_with_pad(config) == policy_folder_with_pad(config)  # saved once, then reused


def test_lora_policy_saves_adapters_and_evaluates(make_config):
    config, path = group_config(make_config, "grpo", **{"policy.use_lora": True, "policy.lora_r": 4,
                                                        "grpo.max_steps": 1})
    assert main(["train", "--config", path]) == 0
    policy = Path(config["output_dir"]) / "grpo" / "ours_50" / "seed_0" / "policy"
    assert (policy / "adapter_config.json").is_file() and not (policy / "model.safetensors").exists()
    assert main(["evaluate", "--config", path]) == 0
    rows = (Path(config["output_dir"]) / "evaluate" / "ours_50" / "seed_0" / "samples.jsonl").read_text().splitlines()
    assert len(rows) == 8


@pytest.mark.parametrize(("arguments", "message"), [
    (["--algorithm", "dpo"], "algorithm='dpo' is not one of 'ppo', 'grpo', 'rloo'"),
    (["--algorithm", "grpo", "--ppo.kl_coef", "0.1"],
     "--ppo.kl_coef applies to algorithm ppo, but algorithm is grpo (choices: ppo, grpo, rloo)"),
    (["--algorithm", "grpo", "--rloo.beta", "0.1"],
     "--rloo.beta applies to algorithm rloo, but algorithm is grpo (choices: ppo, grpo, rloo)"),
    (["--grpo.loss_type", "grpo"], "--grpo.loss_type applies to algorithm grpo, but algorithm is ppo"),
    (["--algorithm", "grpo", "--grpo.num_generations", "1"], "num_generations=1 must be at least 2"),
    (["--algorithm", "grpo", "--grpo.num_generations", "8"],
     "4 completions per update is not a multiple of num_generations=8"),
    (["--algorithm", "grpo", "--grpo.use_vllm", "true"], "grpo.use_vllm=true needs a CUDA GPU"),
    (["--algorithm", "rloo", "--rloo.reward_clip_range", "[1, -1]"], "reward_clip_range=[1.0, -1.0] must be"),
])
def test_bad_input_is_one_line_and_leaves_no_training_stage(arguments, message, make_config, capsys):
    config, path = group_config(make_config, "grpo")
    config["algorithm"] = "ppo"  # the file's default; the arguments choose
    Path(path).write_text(json.dumps(config))  # JSON is YAML
    assert main(["train", "--config", path, *arguments]) == 1
    assert message in _one_line_error(capsys)
    run = Path(config["output_dir"])
    assert not any((run / name).exists() for name in ("ppo", "grpo", "rloo"))


def test_ppo_command_refuses_another_algorithm(make_config, capsys):
    config, path = group_config(make_config, "rloo")
    assert main(["ppo", "--config", path]) == 1
    err = _one_line_error(capsys)
    assert "`align ppo` trains with PPO, but algorithm is rloo; run `python -m align train --config" in err


def test_evaluate_before_training_names_the_train_command(make_config, capsys):
    config, path = group_config(make_config, "grpo")
    assert main(["evaluate", "--config", path]) == 1
    err = _one_line_error(capsys)
    assert "stage grpo/ours_50/seed_0 has not run; run `python -m align train --config" in err


def test_shared_ppo_keys_apply_to_every_algorithm():
    overrides = ["--algorithm", "rloo", "--ppo.num_seeds", "2", "--ppo.normalize_rewards", "true",
                 "--ppo.reward_models", "{ours_50: /x}"]
    config = load_config(AlignConfig, None, overrides)
    check_algorithm_overrides(config, parse_overrides(overrides))  # accepted
    assert config.ppo.seeds == [0, 1] and config.training is config.rloo
    # A config file may hold every algorithm's section: the one selected is used.
    demo = load_config(AlignConfig, Path(__file__).resolve().parents[2] / "configs" / "demo.yaml",
                       ["--algorithm", "grpo"])
    assert demo.training.num_generations == 4 and demo.ppo.response_length == 24
    assert load_config(AlignConfig, None, ["--stop_after", "ppo"]).stop_after == "train"  # the older name


@pytest.mark.parametrize("algorithm", ["grpo", "rloo"])
def test_settings_reach_trl_config_under_their_names(algorithm, tmp_path):
    """Each key of the section is the TRL field of the same name (align/algorithms.py has the table)."""
    from align.grpo_rloo import trainer_arguments

    values = {"learning_rate": 2e-6, "beta": 0.1, "num_generations": 4, "max_completion_length": 16,
              "temperature": 0.7, "top_p": 0.9, "per_device_train_batch_size": 8, "gradient_accumulation_steps": 2,
              "num_iterations": 2, "epsilon": 0.3, "num_train_epochs": 2.0, "mask_truncated_completions": True,
              "logging_steps": 3}
    extra = {"grpo": {"loss_type": "dr_grpo", "scale_rewards": "batch"},
             "rloo": {"normalize_advantages": True, "reward_clip_range": [-5.0, 5.0]}}[algorithm]
    overrides = ["--algorithm", algorithm, "--policy.dtype", "float32"]
    for key, value in {**values, **extra}.items():
        overrides += [f"--{algorithm}.{key}", json.dumps(value)]
    config = load_config(AlignConfig, None, overrides)
    args = trainer_arguments(config, tmp_path / "trainer", seed=7)
    assert type(args).__name__ == {"grpo": "GRPOConfig", "rloo": "RLOOConfig"}[algorithm]
    for key, value in {**values, **extra}.items():
        assert getattr(args, key) == (tuple(value) if key == "reward_clip_range" else value), key
    assert args.seed == 7 and args.max_steps == -1  # null: num_train_epochs decides
    assert not args.bf16 and not args.activation_checkpointing and args.use_cpu  # CPU: silr's fixed choices
    assert args.model_init_kwargs == {"dtype": "float32"} and args.save_strategy == "no"
    assert args.generation_batch_size == 16  # 8 completions x 2 accumulation steps x 1 process
    config = load_config(AlignConfig, None, ["--algorithm", algorithm, f"--{algorithm}.max_steps", "5"])
    assert trainer_arguments(config, tmp_path / "trainer", seed=0).max_steps == 5
