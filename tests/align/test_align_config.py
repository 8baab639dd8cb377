"""align.config: shipped configs load, values are checked where they are read, and the refine variants' overrides."""

from __future__ import annotations

from pathlib import Path

import pytest

from align.cli import main
from align.config import AlignConfig
from align.stages import needed_refine_variants, refine_variant_config
from refine.config_loading import ConfigError, load_config

ROOT = Path(__file__).resolve().parents[2]
SHIPPED = sorted([ROOT / "configs" / "demo.yaml", ROOT / "configs" / "paper_safety.yaml",
                  *(ROOT / "configs" / "align").rglob("*.yaml")])


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: p.name)
def test_shipped_configs_load(path):
    config = load_config(AlignConfig, path)
    needed = needed_refine_variants(config)
    assert set(needed) <= {"pn", "oracle", "labels50", "gold"}
    assert bool(config.refine.data.path) == bool(needed), "a config that refines must name its corpus"


def test_demo_config_is_cpu_sized():
    config = load_config(AlignConfig, ROOT / "configs" / "demo.yaml")
    assert config.variants == ["sft", "vanilla_rlaif", "ours_oracle", "ours_50"]
    # The judge is trained on preference pairs (evaluate.judge: pairs), not refined: no gold refine variant.
    assert needed_refine_variants(config) == ["pn", "oracle", "labels50"]
    assert config.evaluate.judge == "pairs" and config.evaluate.judge_pairs.pairs == "hh_rlhf_harmless_test"
    assert config.policy.model_name_or_path == "smollm2" and not config.policy.use_lora
    # Response-level rewards: a cross-encoder over (prompt, answer) pairs of XSTest, split by prompt.
    data = config.refine.data
    assert (data.format, data.prompt_column, data.response_column, data.group_column) == (
        "xstest", "prompt", "response", "prompt_id")
    assert data.path.endswith("/xstest") and "${data_dir}" not in data.path  # expanded on load
    assert config.refine.classifier.backbone == "finetune" and config.refine.train.surrogate == "logistic"


def test_refine_variants_apply_their_overrides(tmp_path):
    config = load_config(AlignConfig, ROOT / "configs" / "demo.yaml",
                         ["--output_dir", str(tmp_path / "run"), "--refine_overrides", "{gold: {train: {seed: 7}}}"])
    pn, oracle, labels50, gold = (refine_variant_config(config, v) for v in ("pn", "oracle", "labels50", "gold"))
    assert (pn.train.loss, pn.loop.iterations) == ("pn", 1)
    assert (oracle.train.loss, oracle.priors.method, oracle.loop.iterations) == ("robust_uu", "oracle", 1)
    assert (labels50.priors.method, labels50.data.num_labeled) == ("consistent", 50)
    assert (gold.train.loss, gold.train.seed) == ("gold", 7)
    assert pn.output_dir == str(tmp_path / "run" / "refine" / "pn")
    assert {v.cache_dir for v in (pn, oracle, labels50, gold)} == {str(tmp_path / "run" / "cache")}


def test_unknown_key_names_the_closest(tmp_path):
    with pytest.raises(ConfigError, match=r"unknown key ppo\.kl_coeff \(did you mean ppo\.kl_coef\?\)"):
        load_config(AlignConfig, None, ["--ppo.kl_coeff", "0.1"])


@pytest.mark.parametrize("value", ["bogus", "0", "-1"])
def test_export_iteration_is_checked_before_any_stage_runs(value):
    with pytest.raises(ConfigError, match=rf"export_iteration='{value}' must be best, last or a refined iteration"):
        load_config(AlignConfig, None, ["--export_iteration", value])
    assert load_config(AlignConfig, None, ["--export_iteration", " Last"]).export_iteration == "last"


def test_unknown_variant_is_refused():
    with pytest.raises(ConfigError, match=r"unknown variant 'mine'.*ppo\.reward_models\.mine"):
        load_config(AlignConfig, None, ["--variants", "[sft, mine]"])
    config = load_config(AlignConfig, None, ["--variants", "[sft, mine]", "--ppo.reward_models", "{mine: /x}"])
    assert config.trained_variants == ["mine"]


@pytest.mark.parametrize("value", ["0", "-5"])
def test_cli_refuses_non_positive_response_length(tmp_path, capsys, value):
    run = tmp_path / "run"
    code = main(["ppo", "--config", str(ROOT / "configs" / "demo.yaml"), "--output_dir", str(run),
                 "--ppo.response_length", value])
    err = capsys.readouterr().err.strip()
    assert code == 1
    assert len(err.splitlines()) == 1
    assert err.startswith("error: ppo: response_length=") and "must be positive" in err
    assert not run.exists()


def test_cli_without_command_prints_usage(capsys):
    assert main([]) == 2
    assert "choose a command" in capsys.readouterr().err


@pytest.mark.parametrize("command", ["evaluate", "report", "pipeline"])
def test_single_process_commands_refuse_a_multi_process_launch(tmp_path, capsys, monkeypatch, command):
    """Under `accelerate launch` every rank would run the stage and write the same files; only `ppo` is sharded."""
    run = tmp_path / "run"
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "0")
    code = main([command, "--config", str(ROOT / "configs" / "demo.yaml"), "--output_dir", str(run)])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1
    assert err.startswith(f"error: `align {command}` runs in one process") and f"python -m align {command}" in err
    assert not run.exists()


def test_shipped_configs_evaluate_over_refusal_and_the_rewards():
    demo = load_config(AlignConfig, ROOT / "configs" / "demo.yaml")
    paper = load_config(AlignConfig, ROOT / "configs" / "paper_safety.yaml")
    for config in (demo, paper):
        assert config.prompts.safe_eval_sources == ["xstest_safe"]
        assert config.evaluate.reward_pairs == "hh_rlhf_harmless_test"
    assert demo.evaluate.reward_max_pairs == 400 and paper.evaluate.reward_max_pairs is None


@pytest.mark.parametrize(("overrides", "message"), [
    (["--prompts.safe_eval_sources", "[simple_safety_tests]"],
     r"simple_safety_tests is in both eval_sources \(prompts to refuse\) and safe_eval_sources"),
    (["--evaluate.reward_max_pairs", "0"], r"reward_max_pairs=0 must be positive or null"),
    (["--variants", "[sft, judge]", "--ppo.reward_models", "{judge: /x}"],
     r"variant name 'judge' is reserved for the judge \(reward_eval/judge\)"),
])
def test_new_evaluation_settings_are_checked(overrides, message):
    with pytest.raises(ConfigError, match=message):
        load_config(AlignConfig, None, overrides)
