"""Multi-process refine: sharded walks gather every row once, and a 2-process CPU run equals a 1-process run.

The 2-process runs go through the real entry point, ``accelerate launch --config_file
accelerate_configs/cpu_multiprocess.yaml -m refine --config ...`` (about 15 s each on 2 cores).
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import yaml

from refine import distributed
from refine.encoder import encode_texts, predict_unsafe_logits
from tests.helpers import single_torch_thread

REPO = Path(__file__).resolve().parents[2]
UNSAFE = "kill hate bomb poison hurt threaten".split()
SAFE = "bread garden music friend weather school".split()
N_TEXTS = 241  # odd, and not a multiple of the batch size: the last batch and the shards are uneven


@pytest.fixture(autouse=True)
def one_torch_thread():
    with single_torch_thread():
        yield


class TestSingleProcess:
    def test_gather_rows_puts_rows_in_order(self):
        rows = np.array([3, 0, 2, 1])
        values = torch.tensor([[3.0], [0.0], [2.0], [1.0]])
        assert distributed.gather_rows(rows, values, 4)[:, 0].tolist() == [0.0, 1.0, 2.0, 3.0]

    def test_gather_rows_refuses_missing_or_duplicated_rows(self):
        with pytest.raises(ValueError, match="2 missing, 1 duplicated"):
            distributed.gather_rows(np.array([0, 0, 2]), torch.zeros(3, 1), 4)

    def test_helpers_are_no_ops(self):
        assert (distributed.num_processes(), distributed.process_index(), distributed.is_main_process()) == (1, 0, True)
        assert distributed.shard([1, 2, 3]) == [1, 2, 3]
        with distributed.distributed_session(), distributed.main_process_first():
            distributed.wait_for_everyone()
        assert not torch.distributed.is_initialized()

    def test_exists_on_main_is_path_exists(self, tmp_path):
        assert not distributed.exists_on_main(tmp_path / "metrics.json")
        (tmp_path / "metrics.json").write_text("{}")
        assert distributed.exists_on_main(tmp_path / "metrics.json")

    @pytest.mark.parametrize("size, rank", [("WORLD_SIZE", "RANK"), ("OMPI_COMM_WORLD_SIZE", "OMPI_COMM_WORLD_RANK"),
                                            ("PMI_SIZE", "PMI_RANK")])
    def test_launch_is_read_from_torchrun_and_mpi_variables(self, monkeypatch, size, rank):
        for name in (*distributed.WORLD_SIZE_VARIABLES, *distributed.RANK_VARIABLES):
            monkeypatch.delenv(name, raising=False)
        assert (distributed.launched_world_size(), distributed.launched_rank()) == (1, 0)
        monkeypatch.setenv(size, "4")
        monkeypatch.setenv(rank, "3")
        assert (distributed.launched_world_size(), distributed.launched_rank()) == (4, 3)

    def test_sharded_walks_equal_plain_walks(self, tiny_bert_dir):
        from refine.encoder import load_classifier

        model, tokenizer = load_classifier(tiny_bert_dir)
        texts = [" ".join(["word"] * (i % 9 + 1)) + f" {i}" for i in range(21)]
        plain = encode_texts(model, tokenizer, texts, max_length=16, batch_size=4)
        sharded = encode_texts(model, tokenizer, texts, max_length=16, batch_size=4, across_processes=True)
        assert torch.equal(plain.head_input, sharded.head_input) and torch.equal(plain.mean, sharded.mean)
        logits = predict_unsafe_logits(model, tokenizer, texts, max_length=16, batch_size=4, across_processes=True)
        one_by_one = [model(**tokenizer(t, return_tensors="pt")).logits[0, 0].item() for t in texts]
        assert np.abs(logits - np.array(one_by_one)).max() < 1e-5


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def launch_two_processes(config_path: Path, output_dir: Path) -> str:
    """``accelerate launch`` (2 CPU processes) of ``python -m refine``; returns its log, fails the test on error."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1",
           "TOKENIZERS_PARALLELISM": "false", "PYTHONPATH": str(REPO)}
    command = [sys.executable, "-m", "accelerate.commands.launch",
               "--config_file", str(REPO / "accelerate_configs" / "cpu_multiprocess.yaml"),
               "--main_process_port", str(_free_port()),
               "-m", "refine", "--config", str(config_path), "--output_dir", str(output_dir)]
    result = subprocess.run(command, cwd=config_path.parent, env=env, capture_output=True, text=True, timeout=300)
    log = result.stdout + result.stderr
    assert result.returncode == 0, log[-4000:]
    assert "refine runs on 2 processes" in log
    assert result.stdout.count("results: ") == 1  # the table is printed by the main process only
    return log


@pytest.fixture(scope="module")
def corpus_dir(tmp_path_factory, minilm_tokenizer) -> Path:
    """A BERT whose [CLS] states vary between texts (initializer_range 0.5), and a learnable word-salad corpus."""
    from transformers import BertConfig, BertModel

    root = tmp_path_factory.mktemp("distributed")
    torch.manual_seed(0)
    config = BertConfig(vocab_size=minilm_tokenizer.vocab_size, hidden_size=32, num_hidden_layers=2,
                        num_attention_heads=2, intermediate_size=64, initializer_range=0.5)
    BertModel(config).save_pretrained(root / "bert")
    minilm_tokenizer.save_pretrained(root / "bert")
    rng = np.random.default_rng(0)
    gold = (rng.random(N_TEXTS) < 0.4).astype(int)
    texts = [" ".join(rng.choice(UNSAFE if y else SAFE, size=int(rng.integers(3, 30))).tolist()
                      + rng.choice(SAFE + UNSAFE, size=3).tolist()) for y in gold]
    pd.DataFrame({"text": texts, "label": gold}).to_csv(root / "corpus.csv", index=False)
    return root


def write_config(root: Path, name: str, **sections) -> Path:
    config = {
        "data": {"path": str(root / "corpus.csv"), "label_columns": ["label"], "num_labeled": 30, "test_fraction": 0.25},
        "annotator": {"kind": "embedding", "threshold": "labeled_prior"},  # reuses the gathered features
        "classifier": {"model_name_or_path": str(root / "bert"), "max_length": 32, "encode_batch_size": 16},
        "train": {"labeled_weight": 0.5, "threshold": "prior_match", "num_train_epochs": 100, "learning_rate": 0.01,
                  "batch_size": 32},
        **sections,
    }
    path = root / f"{name}.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def read_iterations(run: Path) -> list[tuple[pd.DataFrame, dict, dict]]:
    folders = sorted((run / "refine").glob("iter_*"), key=lambda p: int(p.name.split("_")[1]))
    return [(pd.read_parquet(f / "labels.parquet"), json.loads((f / "priors.json").read_text()),
             json.loads((f / "metrics.json").read_text())) for f in folders]


def test_two_processes_equal_one_process_frozen(corpus_dir, tmp_path):
    """Features are sharded and gathered, heads trained on every rank and the main rank's scores broadcast.

    Tolerance: scores within 1e-6 (observed: bit-identical; both runs use one thread and the same length-sorted
    batches, so each text is encoded by the same kernels), hence identical labels, priors and metrics.
    """
    from refine.config import RefineConfig
    from refine.config_loading import load_config
    from refine.loop import run_refine

    config_path = write_config(corpus_dir, "frozen", loop={"iterations": 3})
    run_refine(load_config(RefineConfig, config_path, ["--output_dir", str(tmp_path / "one")]))
    launch_two_processes(config_path, tmp_path / "two")

    one, two = read_iterations(tmp_path / "one"), read_iterations(tmp_path / "two")
    assert len(one) == len(two) == 4
    for (labels1, priors1, metrics1), (labels2, priors2, metrics2) in zip(one, two, strict=True):
        assert labels1["id"].tolist() == labels2["id"].tolist() == list(range(N_TEXTS))
        assert np.abs(labels1["score"].to_numpy() - labels2["score"].to_numpy()).max() <= 1e-6
        assert (labels1["pseudo_label"] == labels2["pseudo_label"]).all()
        assert priors1 == pytest.approx(priors2, abs=1e-9)
        for key, value in metrics1.items():
            if isinstance(value, float):
                assert metrics2[key] == pytest.approx(value, abs=1e-9, nan_ok=True), key
    assert (tmp_path / "two" / "refine" / "baselines.json").is_file()  # written once, by the main process
    assert not list((tmp_path / "two").rglob(".*.tmp"))  # no half-written file left by a second writer

    # Rerun on the finished folder: every rank takes the resume branch of every iteration (decided by the main
    # process, so no rank waits at a barrier the others skip) and nothing changes.
    launch_two_processes(config_path, tmp_path / "two")
    for (labels2, priors2, metrics2), (labels3, priors3, metrics3) in zip(two, read_iterations(tmp_path / "two"),
                                                                          strict=True):
        assert labels2.equals(labels3) and priors2 == priors3 and metrics2 == metrics3


def test_two_processes_finetune_shard_training_and_relabelling(corpus_dir, tmp_path):
    """DDP halves the optimiser steps; the gathered scores equal the saved classifier's scores in one process."""
    from refine.classifier_io import load_refined_classifier

    config_path = write_config(
        corpus_dir, "finetune", classifier={"model_name_or_path": str(corpus_dir / "bert"), "backbone": "finetune",
                                            "max_length": 32, "encode_batch_size": 16},
        finetune={"per_device_train_batch_size": 8, "per_device_eval_batch_size": 16, "num_train_epochs": 1,
                  "learning_rate": 1e-3, "frozen_baselines": False},
        loop={"iterations": 1},
    )
    launch_two_processes(config_path, tmp_path / "two")
    iteration = tmp_path / "two" / "refine" / "iter_1"
    labels = pd.read_parquet(iteration / "labels.parquet")
    assert labels["id"].tolist() == list(range(N_TEXTS))

    history = json.loads((iteration / "history.json").read_text())
    n_train = len(labels[labels["split"] == "train"])
    n_fit = n_train - int(round(0.125 * n_train))  # training rows minus validation rows
    batches = -(-n_fit // 8)
    assert history[0]["step"] == -(-batches // 2)  # each process takes every other batch of 8

    model, tokenizer, meta = load_refined_classifier(iteration / "classifier")
    texts = pd.read_csv(corpus_dir / "corpus.csv")["text"].tolist()
    scores = predict_unsafe_logits(model, tokenizer, texts, max_length=meta.max_length, batch_size=5)
    assert np.abs(scores - labels["score"].to_numpy()).max() < 1e-4


@pytest.mark.slow
def test_deepspeed_zero3_profile_runs_refine_on_one_cpu_process(corpus_dir, tmp_path):
    """accelerate_configs/deepspeed_zero3.yaml drives the fine-tuning Trainer (ZeRO-3 on CPU works as one process
    only, STACK.md); two iterations build two DeepSpeed engines, and each saved classifier reproduces its scores."""
    from refine.classifier_io import load_refined_classifier

    config_path = write_config(
        corpus_dir, "deepspeed", classifier={"model_name_or_path": str(corpus_dir / "bert"), "backbone": "finetune",
                                             "max_length": 32},
        finetune={"per_device_train_batch_size": 8, "num_train_epochs": 1, "learning_rate": 1e-3,
                  "frozen_baselines": False},
        priors={"min_prior_gap": 0.01}, loop={"iterations": 2},
    )
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false",
           "PYTHONPATH": str(REPO), "TORCH_EXTENSIONS_DIR": str(REPO / ".cache" / "torch_extensions")}
    command = [sys.executable, "-m", "accelerate.commands.launch",
               "--config_file", str(REPO / "accelerate_configs" / "deepspeed_zero3.yaml"), "--num_processes", "1",
               "--mixed_precision", "no", "--main_process_port", str(_free_port()),
               "-m", "refine", "--config", str(config_path), "--output_dir", str(tmp_path / "run")]
    result = subprocess.run(command, cwd=corpus_dir, env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, (result.stdout + result.stderr)[-4000:]
    texts = pd.read_csv(corpus_dir / "corpus.csv")["text"].tolist()
    for k in (1, 2):
        iteration = tmp_path / "run" / "refine" / f"iter_{k}"
        model, tokenizer, meta = load_refined_classifier(iteration / "classifier")
        scores = predict_unsafe_logits(model, tokenizer, texts, max_length=meta.max_length, batch_size=8)
        assert np.abs(scores - pd.read_parquet(iteration / "labels.parquet")["score"].to_numpy()).max() < 1e-4
