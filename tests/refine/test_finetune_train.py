"""Fine-tuning backbone end to end on tiny models: training moves the right parameters, the saved folder reproduces
the in-process scores, LoRA leaves the base alone, and a refine iteration with ``backbone: finetune`` runs."""

from __future__ import annotations

import pickle
import shutil

import numpy as np
import pandas as pd
import pytest
import torch

from refine.config import RefineConfig
from refine.config_loading import config_from_dict
from refine.encoder import predict_unsafe_logits
from refine.finetune import build_trainer, finetune_classifier, load_tokenizer, new_classifier
from refine.loop import Corpus
from refine.priors import Priors
from tests.helpers import plain_hf_logits, single_torch_thread

PRIORS = Priors(pi=0.4, theta1=0.8, theta2=0.15)
UNSAFE = "kill hate bomb poison hurt threaten".split()
SAFE = "bread garden music friend weather school".split()


@pytest.fixture(autouse=True)
def one_torch_thread():
    with single_torch_thread():
        yield


def make_corpus(n: int = 40, seed: int = 0) -> tuple[Corpus, np.ndarray]:
    """Word-salad texts (unsafe ones use unsafe words), 25%% test rows, 8 rows of L, 5 validation rows; and
    pseudo-labels that are 80%% right."""
    rng = np.random.default_rng(seed)
    gold = (rng.random(n) < 0.4).astype(np.int64)
    texts = [" ".join(rng.choice(UNSAFE if y else SAFE, size=int(rng.integers(2, 12)))) for y in gold]
    split = np.where(np.arange(n) < int(0.75 * n), "train", "test")
    train = np.flatnonzero(split == "train")
    frame = pd.DataFrame({"id": np.arange(n), "text": texts, "gold": gold, "split": split,
                          "labeled": np.isin(np.arange(n), train[:8])})
    corpus = Corpus(frame=frame, features=None, train=train, test=np.flatnonzero(split == "test"),
                    labeled=train[:8], validation=train[-5:])
    pseudo = np.where(rng.random(n) < 0.8, gold, 1 - gold)
    return corpus, pseudo


def make_config(model_dir: str, tmp_path, *, train=None, **finetune) -> RefineConfig:
    return config_from_dict(RefineConfig, {
        "output_dir": str(tmp_path / "run"),
        "classifier": {"model_name_or_path": model_dir, "backbone": "finetune", "max_length": 16},
        "train": {"labeled_weight": 0.5, **(train or {})},
        "finetune": {"per_device_train_batch_size": 8, "per_device_eval_batch_size": 16, "num_train_epochs": 1,
                     "learning_rate": 1e-2, "logging_steps": 1, "labeled_per_step": 4, **finetune},
    })


def snapshot(model) -> dict[str, torch.Tensor]:
    return {name: p.detach().clone() for name, p in model.named_parameters()}


def plain_logits(folder, texts) -> np.ndarray:
    """Scores of a saved classifier through nothing but transformers: batches of 3, padded per batch."""
    return plain_hf_logits(folder, texts, max_length=16, batch_size=3)


@pytest.mark.parametrize("model_fixture", ["tiny_bert_dir", "tiny_llama_dir"])
def test_train_changes_every_trainable_parameter(model_fixture, request, tmp_path):
    model_dir = request.getfixturevalue(model_fixture)
    config = make_config(model_dir, tmp_path)
    corpus, pseudo = make_corpus()
    trainer = build_trainer(config, corpus, pseudo, PRIORS, seed=1, work_dir=tmp_path / "work",
                            tokenizer=load_tokenizer(model_dir))
    before = snapshot(trainer.model)
    trainer.train()
    after = snapshot(trainer.model)
    unchanged = [name for name in before if torch.equal(before[name], after[name])]
    assert not unchanged
    assert "train_loss" in trainer.state.log_history[-1]
    assert any("eval_risk" in entry for entry in trainer.state.log_history)  # validation each epoch


def test_lora_trains_adapters_and_head_only_and_saves_the_head(tiny_bert_dir, tmp_path):
    config = make_config(tiny_bert_dir, tmp_path, lora_r=4, lora_alpha=8, lora_dropout=0.0)
    corpus, pseudo = make_corpus()
    tokenizer = load_tokenizer(tiny_bert_dir)
    trainer = build_trainer(config, corpus, pseudo, PRIORS, seed=1, work_dir=tmp_path / "work", tokenizer=tokenizer)
    model = trainer.model
    trainable = {name for name, p in model.named_parameters() if p.requires_grad}
    assert any("lora_" in name for name in trainable)
    assert any("classifier" in name and "modules_to_save" in name for name in trainable)
    assert any("pooler" in name and "modules_to_save" in name for name in trainable)
    before = snapshot(model)
    trainer.train()
    after = snapshot(model)
    for name in before:
        assert torch.equal(before[name], after[name]) != (name in trainable), name

    # Through finetune_classifier: the saved, merged folder holds the trained head and the untouched base.
    trained = finetune_classifier(config, corpus, pseudo, PRIORS, seed=1, work_dir=tmp_path / "work2")
    trained.save(tmp_path / "classifier", threshold=0.0)
    scores = plain_logits(tmp_path / "classifier", corpus.frame["text"].tolist())
    assert np.abs(scores - trained.scores).max() < 1e-4
    from transformers import AutoModelForSequenceClassification

    saved = AutoModelForSequenceClassification.from_pretrained(tmp_path / "classifier")
    fresh = new_classifier(make_config(tiny_bert_dir, tmp_path), tokenizer, seed=1)  # same seed, no LoRA: the init
    assert torch.equal(saved.bert.embeddings.word_embeddings.weight, fresh.bert.embeddings.word_embeddings.weight)
    assert torch.equal(saved.bert.encoder.layer[0].intermediate.dense.weight,
                       fresh.bert.encoder.layer[0].intermediate.dense.weight)  # no adapter there
    assert not torch.equal(saved.classifier.weight, fresh.classifier.weight)  # the head was trained and saved
    assert not torch.equal(saved.bert.encoder.layer[0].attention.self.query.weight,
                           fresh.bert.encoder.layer[0].attention.self.query.weight)  # LoRA merged
    assert not (tmp_path / "work2").exists()  # checkpoints removed once the classifier is saved


@pytest.mark.parametrize("model_fixture", ["tiny_bert_dir", "tiny_llama_dir"])
def test_saved_folder_reproduces_the_in_process_scores(model_fixture, request, tmp_path):
    from refine.classifier_io import load_refined_classifier

    model_dir = request.getfixturevalue(model_fixture)
    config = make_config(model_dir, tmp_path, num_train_epochs=2)
    corpus, pseudo = make_corpus()
    trained = finetune_classifier(config, corpus, pseudo, PRIORS, seed=2, work_dir=tmp_path / "work")
    assert [row["epoch"] for row in trained.history] == [1, 2] and "validation_risk" in trained.history[0]
    trained.save(tmp_path / "classifier", threshold=0.25)
    texts = corpus.frame["text"].tolist()
    assert np.abs(plain_logits(tmp_path / "classifier", texts) - trained.scores).max() < 1e-4

    model, tokenizer, meta = load_refined_classifier(tmp_path / "classifier")
    assert (meta.format, meta.threshold, model.config.num_labels) == ("model", 0.25, 1)
    assert model.config.pad_token_id == tokenizer.pad_token_id is not None
    again = predict_unsafe_logits(model, tokenizer, texts, max_length=meta.max_length, batch_size=7)
    assert np.abs(again - trained.scores).max() < 1e-4


def test_refine_iteration_with_finetune_backbone_exports_a_reward_model(tiny_bert_dir, tmp_path):
    from refine.loop import run_refine
    from reward.export import export_reward_model
    from reward.model import RewardModel

    corpus, pseudo = make_corpus(n=80, seed=3)
    frame = corpus.frame.assign(label=corpus.frame["gold"], noisy=pseudo)
    frame[["text", "label", "noisy"]].to_csv(tmp_path / "corpus.csv", index=False)
    config = config_from_dict(RefineConfig, {
        "output_dir": str(tmp_path / "run"),
        "data": {"path": str(tmp_path / "corpus.csv"), "label_columns": ["label"], "num_labeled": 12},
        "annotator": {"kind": "column", "column": "noisy"},
        "classifier": {"model_name_or_path": tiny_bert_dir, "backbone": "finetune", "max_length": 16},
        "train": {"labeled_weight": 0.5, "threshold": "prior_match"},
        "finetune": {"per_device_train_batch_size": 16, "num_train_epochs": 1, "learning_rate": 1e-3,
                     "frozen_baselines": False},
        "loop": {"iterations": 1},
    })
    table = run_refine(config)
    assert table["iteration"].tolist() == [0, 1]
    iteration = tmp_path / "run" / "refine" / "iter_1"
    labels = pd.read_parquet(iteration / "labels.parquet")
    assert len(labels) == 80 and labels["id"].tolist() == list(range(80))
    assert not list((tmp_path / "run" / "refine").glob("trainer_iter_*"))

    out = export_reward_model(tmp_path / "run", tmp_path / "reward", iteration="last")
    rewards = RewardModel.from_pretrained(out, device="cpu", batch_size=8).score(frame["text"].tolist())
    assert np.abs(np.asarray(rewards) + labels["score"].to_numpy()).max() < 1e-4  # reward = -unsafe_logit


def test_an_interrupted_iteration_resumes_from_its_checkpoint(tiny_bert_dir, tmp_path):
    from transformers import TrainerCallback

    class StopAfterFirstEpoch(TrainerCallback):
        def on_epoch_end(self, args, state, control, **kwargs):
            control.should_training_stop = True

    config = make_config(tiny_bert_dir, tmp_path, num_train_epochs=2)
    corpus, pseudo = make_corpus()
    whole = finetune_classifier(config, corpus, pseudo, PRIORS, seed=4, work_dir=tmp_path / "whole")
    interrupted = build_trainer(config, corpus, pseudo, PRIORS, seed=4, work_dir=tmp_path / "resumed",
                                tokenizer=load_tokenizer(tiny_bert_dir))
    interrupted.add_callback(StopAfterFirstEpoch())
    interrupted.train()  # stands for a run killed after epoch 1: its checkpoint is on disk
    (complete,) = list((tmp_path / "resumed").glob("checkpoint-*"))
    # A later save cut off by the kill: weights written, trainer_state.json (the Trainer's last file) not yet.
    cut_off = complete.with_name("checkpoint-999")
    shutil.copytree(complete, cut_off)
    (cut_off / "trainer_state.json").unlink()
    resumed = finetune_classifier(config, corpus, pseudo, PRIORS, seed=4, work_dir=tmp_path / "resumed")
    assert [row["epoch"] for row in resumed.history] == [1, 2]
    assert np.abs(resumed.scores - whole.scores).max() < 1e-5


def test_selection_labeled_keeps_the_epoch_with_the_lowest_risk_on_l(tiny_bert_dir, tmp_path):
    config = make_config(tiny_bert_dir, tmp_path, train={"selection": "labeled"}, num_train_epochs=3)
    corpus, pseudo = make_corpus()
    trainer = build_trainer(config, corpus, pseudo, PRIORS, seed=6, work_dir=tmp_path / "work",
                            tokenizer=load_tokenizer(tiny_bert_dir))
    trainer.train()
    evaluations = [entry for entry in trainer.state.log_history if "eval_labeled_risk" in entry]
    assert len(evaluations) == 3 and all("eval_risk" in entry for entry in evaluations)
    best = min(evaluations, key=lambda entry: entry["eval_labeled_risk"])
    assert trainer.state.best_model_checkpoint.endswith(f"checkpoint-{best['step']}")


def test_loss_labeled_trains_on_l_alone_without_validation(tiny_bert_dir, tmp_path):
    config = make_config(tiny_bert_dir, tmp_path, train={"loss": "labeled"}, num_train_epochs=2)
    corpus, pseudo = make_corpus()
    trained = finetune_classifier(config, corpus, pseudo, None, seed=5, work_dir=tmp_path / "work")
    assert len(trained.history) == 1 and "validation_risk" not in trained.history[0]
    assert trained.history[0]["step"] == 2  # 8 rows of L, batch 8, 2 epochs
    assert trained.scores.shape == (40,) and np.isfinite(trained.scores).all()


@pytest.mark.parametrize("recipe", ["minilm_finetune.yaml", "paper_llama32_1b_qlora.yaml"])
def test_fine_tune_recipes_load(recipe):
    from pathlib import Path

    from refine.config_loading import load_config

    config = load_config(RefineConfig, Path(__file__).resolve().parents[2] / "configs" / "refine" / recipe)
    assert config.classifier.backbone == "finetune"
    if recipe.startswith("paper"):
        ft = config.finetune
        assert (ft.load_in_4bit, ft.lora_r, ft.lora_alpha, ft.lora_dropout, ft.learning_rate) == (True, 8, 32, 0.05, 1e-4)
        assert (ft.lr_scheduler_type, ft.warmup_ratio, ft.per_device_train_batch_size, ft.num_train_epochs) == (
            "cosine", 0.03, 32, 3)
        assert (config.loop.iterations, config.classifier.max_length, ft.optim) == (5, 512, "paged_adamw_32bit")


def test_a_trainer_checkpoint_with_a_code_running_pickle_is_refused_by_transformers(tiny_bert_dir, tmp_path):
    """Trainer checkpoints hold torch pickles (optimizer.pt, rng_state.pth) that resume reads without asking: this
    pins that transformers reads them with torch.load(weights_only=True), which runs no code (see
    refine.finetune.pickled_states). A payload planted in rng_state.pth stops the resume, and never runs."""
    from tests.refine.test_finetune import UnpicklingLeavesAMark

    class StopAfterFirstEpoch(__import__("transformers").TrainerCallback):
        def on_epoch_end(self, args, state, control, **kwargs):
            control.should_training_stop = True

    config = make_config(tiny_bert_dir, tmp_path, num_train_epochs=2)
    corpus, pseudo = make_corpus()
    trainer = build_trainer(config, corpus, pseudo, PRIORS, seed=4, work_dir=tmp_path / "work",
                            tokenizer=load_tokenizer(tiny_bert_dir))
    trainer.add_callback(StopAfterFirstEpoch())
    trainer.train()
    (checkpoint,) = list((tmp_path / "work").glob("checkpoint-*"))
    marker = tmp_path / "marker.txt"
    for name in ("rng_state.pth", "optimizer.pt"):
        assert (checkpoint / name).is_file()
        torch.save({"payload": UnpicklingLeavesAMark(marker)}, checkpoint / name)
    with pytest.raises(ValueError, match=r"cannot resume from .*checkpoint-\d+: a state file in it holds more than "
                                         r"tensors \(Weights only load failed.*\); delete .*work to train") as err:
        finetune_classifier(config, corpus, pseudo, PRIORS, seed=4, work_dir=tmp_path / "work")
    assert isinstance(err.value.__cause__, pickle.UnpicklingError)
    assert not marker.exists()
