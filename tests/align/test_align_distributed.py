"""Training under `accelerate launch`: PPO and GRPO on two CPU processes (gloo), and DeepSpeed ZeRO-2 as one CPU
process (PPO and GRPO).

accelerate_configs/cpu_multiprocess.yaml and deepspeed_zero2.yaml are used when they exist; otherwise equivalent
flags or an inline profile (`--cpu` alone silently runs one process, see STACK.md). DeepSpeed needs
TORCH_EXTENSIONS_DIR: its first run compiles one op.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
ACCELERATE = str(Path(sys.executable).parent / "accelerate")
ZERO2 = """\
compute_environment: LOCAL_MACHINE
distributed_type: DEEPSPEED
deepspeed_config:
  zero_stage: 2
  offload_optimizer_device: none
  offload_param_device: none
  gradient_accumulation_steps: 1
  zero3_init_flag: false
mixed_precision: 'no'
num_machines: 1
num_processes: 1
machine_rank: 0
use_cpu: true
rdzv_backend: static
same_network: true
"""


def _launch(arguments: list[str], config_path: str, *, use_cpu_env: bool,
            command: str = "ppo") -> subprocess.CompletedProcess:
    # ACCELERATE_USE_CPU=1 makes `--multi_gpu` run gloo CPU processes, but it also replaces a DeepSpeed profile by
    # plain MULTI_CPU (silently), so the DeepSpeed run goes without it.
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1",
           "TRL_EXPERIMENTAL_SILENCE": "1", "TOKENIZERS_PARALLELISM": "false",
           "TORCH_EXTENSIONS_DIR": os.environ.get("TORCH_EXTENSIONS_DIR", str(ROOT / ".cache" / "torch_extensions"))}
    env.pop("ACCELERATE_USE_CPU", None)
    if use_cpu_env:
        env["ACCELERATE_USE_CPU"] = "1"
    launch = [ACCELERATE, "launch", *arguments, "-m", "align", command, "--config", config_path]
    result = subprocess.run(launch, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    # Each rank's exception line first: the tail alone shows only the rank that lost its peer.
    errors = [line for line in result.stderr.splitlines() if re.match(r"(error:|\[rank\d+\]: \w+(Error|Exception))", line)]
    assert result.returncode == 0, "\n".join(errors[:10]) + "\n...\n" + result.stderr[-2000:]
    return result


def test_ppo_on_two_cpu_processes(make_config, tmp_path):
    config, path = make_config(**{"ppo.total_episodes": 8})
    profile = ROOT / "accelerate_configs" / "cpu_multiprocess.yaml"
    arguments = (["--config_file", str(profile)] if profile.is_file() else
                 ["--multi_gpu", "--num_processes", "2", "--num_machines", "1", "--mixed_precision", "no",
                  "--dynamo_backend", "no"])
    result = _launch(arguments, path, use_cpu_env=True)
    folder = Path(config["output_dir"]) / "ppo" / "ours_50" / "seed_0"
    train = json.loads((folder / "train.json").read_text())
    assert train["world_size"] == 2 and train["distributed_type"] == "MULTI_CPU"
    assert train["updates"] == 2 and train["episodes"] == 8  # 2 processes x batch 2 = 4 rollouts per update
    assert (folder / "policy" / "model.safetensors").is_file()
    assert result.stdout.count("policies: ") == 1  # only the main process prints
    # Every process joined one gloo group: a bare PartialState() would come up as DistributedType.NO on each, and
    # both would then write the run folder as "the main process" (a race that failed about 1 run in 15).
    assert "align runs on 2 processes (DistributedType.MULTI_CPU, backend gloo)" in result.stderr


@pytest.mark.slow
def test_two_processes_convert_a_gguf_policy_once_on_a_fresh_cache(make_config):
    """Slow (about 1-2 min): the packaged SmolLM2 GGUF, an empty policy cache, no prompt split yet.

    The main process converts the policy and builds the split while the other waits; both then train. (Converting
    inside a main-process-first block once let rank 1 skip a barrier and build the split at the same time.)
    """
    config, path = make_config(**{"policy.model_name_or_path": "smollm2", "ppo.total_episodes": 4})
    # Ranks out of step at a barrier hang rather than fail (the old code did, here), until the launch times out.
    result = _launch(["--config_file", str(ROOT / "accelerate_configs" / "cpu_multiprocess.yaml")], path,
                     use_cpu_env=True)
    assert "align runs on 2 processes (DistributedType.MULTI_CPU, backend gloo)" in result.stderr
    assert result.stderr.count("converting ") == 1  # by the main process, once
    converted = [p for p in (Path(config["policy"]["cache_dir"])).iterdir() if p.is_dir()]
    assert len(converted) == 1 and (converted[0] / "model.safetensors").is_file()
    folder = Path(config["output_dir"]) / "ppo" / "ours_50" / "seed_0"
    train = json.loads((folder / "train.json").read_text())
    assert train["world_size"] == 2 and train["updates"] == 1
    assert (folder / "policy" / "model.safetensors").is_file()


@pytest.mark.slow
def test_ppo_under_deepspeed_zero2_on_cpu(make_config, tmp_path):
    """Slow: about 30 s, plus about 90 s the first time DeepSpeed compiles its CPU communication op."""
    config, path = make_config()
    profile = ROOT / "accelerate_configs" / "deepspeed_zero2.yaml"
    if not profile.is_file():
        profile = tmp_path / "zero2.yaml"
        profile.write_text(ZERO2)
    # The shared profile is for GPUs (8 processes, bf16); on CPU DeepSpeed runs as one process, in float32.
    _launch(["--config_file", str(profile), "--num_processes", "1", "--mixed_precision", "no"], path,
            use_cpu_env=False)
    folder = Path(config["output_dir"]) / "ppo" / "ours_50" / "seed_0"
    train = json.loads((folder / "train.json").read_text())
    assert train["distributed_type"] == "DEEPSPEED" and train["zero_stage"] == 2
    assert (folder / "policy" / "model.safetensors").is_file()


def test_auto_values_of_a_launch_profile_take_the_ppo_settings(monkeypatch):
    """A Trainer-style DeepSpeed profile passes `auto`; PPOTrainer's own Accelerator would fail on int('auto')."""
    from types import SimpleNamespace

    from align.ppo import resolve_auto_launch_values

    monkeypatch.setenv("ACCELERATE_GRADIENT_ACCUMULATION_STEPS", "auto")
    monkeypatch.setenv("ACCELERATE_GRADIENT_CLIPPING", "0.5")
    resolve_auto_launch_values(SimpleNamespace(gradient_accumulation_steps=4, max_grad_norm=1.0))
    assert os.environ["ACCELERATE_GRADIENT_ACCUMULATION_STEPS"] == "4"
    assert os.environ["ACCELERATE_GRADIENT_CLIPPING"] == "0.5"  # explicit values are kept


# GRPO with 2 completions per prompt and 2 per process: each update has 4 completions (2 prompts) over 2 processes.
GRPO_TINY = {"algorithm": "grpo", "grpo.max_completion_length": 8, "grpo.num_generations": 2,
             "grpo.per_device_train_batch_size": 2, "grpo.max_steps": 2, "grpo.beta": 0.05,
             "grpo.learning_rate": 1e-3}


@pytest.mark.slow
def test_grpo_on_two_cpu_processes(make_config):
    """Slow (about 30-60 s): a real 2-process GRPO update under accelerate_configs/cpu_multiprocess.yaml."""
    config, path = make_config(**GRPO_TINY)
    result = _launch(["--config_file", str(ROOT / "accelerate_configs" / "cpu_multiprocess.yaml")], path,
                     use_cpu_env=True, command="train")
    assert "align runs on 2 processes (DistributedType.MULTI_CPU, backend gloo)" in result.stderr
    folder = Path(config["output_dir"]) / "grpo" / "ours_50" / "seed_0"
    train = json.loads((folder / "train.json").read_text())
    assert train["world_size"] == 2 and train["distributed_type"] == "MULTI_CPU"
    assert train["updates"] == 2 and train["episodes"] == 8  # 2 updates x 2 processes x 2 completions
    assert (folder / "policy" / "model.safetensors").is_file()
    assert result.stdout.count("policies: ") == 1  # only the main process prints


@pytest.mark.slow
def test_grpo_under_deepspeed_zero2_on_cpu(make_config, tmp_path):
    """Slow: about 30 s, plus about 90 s the first time DeepSpeed compiles its CPU communication op."""
    config, path = make_config(**{**GRPO_TINY, "grpo.per_device_train_batch_size": 4})
    profile = ROOT / "accelerate_configs" / "deepspeed_zero2.yaml"
    if not profile.is_file():
        profile = tmp_path / "zero2.yaml"
        profile.write_text(ZERO2)
    _launch(["--config_file", str(profile), "--num_processes", "1", "--mixed_precision", "no"], path,
            use_cpu_env=False, command="train")
    folder = Path(config["output_dir"]) / "grpo" / "ours_50" / "seed_0"
    train = json.loads((folder / "train.json").read_text())
    assert train["distributed_type"] == "DEEPSPEED" and train["zero_stage"] == 2
    assert train["updates"] == 2 and (folder / "policy" / "model.safetensors").is_file()
