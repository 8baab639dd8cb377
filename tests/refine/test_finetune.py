"""Tests of the fine-tuning backbone's parts: the UUTrainer's loss, collator, L rows, validation metric, arguments."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from refine.config import FinetuneConfig, RefineConfig
from refine.config_loading import ConfigError, config_from_dict
from refine.finetune import check_quantization, epoch_history, load_tokenizer, new_classifier, training_arguments
from refine.losses import pn_risk
from refine.objectives import training_risk
from refine.priors import Priors
from refine.uu_trainer import (
    LabeledDraws,
    UUCollator,
    UUTrainer,
    append_rows,
    corpus_and_labeled_risk,
    validation_risk_metric,
)
from tests.helpers import single_torch_thread

PRIORS = Priors(pi=0.4, theta1=0.8, theta2=0.15)


@pytest.fixture(autouse=True)
def one_torch_thread():
    with single_torch_thread():
        yield


def make_config(model_dir: str, tmp_path, **finetune) -> RefineConfig:
    return config_from_dict(RefineConfig, {
        "output_dir": str(tmp_path / "run"),
        "classifier": {"model_name_or_path": model_dir, "backbone": "finetune", "max_length": 24},
        "train": {"labeled_weight": 0.5},
        "finetune": {"per_device_train_batch_size": 8, "num_train_epochs": 1, "learning_rate": 1e-3, **finetune},
    })


def rows(tokenizer, texts, in_u1, gold):
    encoded = tokenizer(texts, truncation=True, max_length=24)
    return [{**{k: encoded[k][i] for k in encoded}, "in_u1": u, "gold": g, "length": len(encoded["input_ids"][i])}
            for i, (u, g) in enumerate(zip(in_u1, gold, strict=True))]


TEXTS = ["I will hurt you", "a nice recipe for banana bread with walnuts and honey", "hello", "bomb the school now",
         "the weather is lovely today in the garden", "thanks"]
IN_U1 = [1, 0, 0, 1, 0, 1]
GOLD = [1, 0, -1, 1, 0, 0]


class TestUUCollator:
    def test_pads_to_the_longest_text_and_keeps_label_columns(self, minilm_tokenizer):
        batch = UUCollator(minilm_tokenizer)(rows(minilm_tokenizer, TEXTS, IN_U1, GOLD))
        longest = max(len(minilm_tokenizer(t)["input_ids"]) for t in TEXTS)
        assert batch["input_ids"].shape == (6, longest)  # dynamic: never a fixed 512
        assert batch["in_u1"].tolist() == IN_U1 and batch["gold"].tolist() == GOLD
        assert "length" not in batch

    def test_pad_to_length_is_the_fixed_padding_baseline(self, minilm_tokenizer):
        batch = UUCollator(minilm_tokenizer, pad_to_length=64)(rows(minilm_tokenizer, TEXTS, IN_U1, GOLD))
        assert batch["input_ids"].shape == (6, 64)


def test_append_rows_right_pads_the_shorter_batch_and_flags_l_rows(minilm_tokenizer):
    collate = UUCollator(minilm_tokenizer)
    batch = collate(rows(minilm_tokenizer, TEXTS[:2], IN_U1[:2], GOLD[:2]))
    extra = collate([{**r, "in_labeled": 1} for r in rows(minilm_tokenizer, TEXTS[2:3], [0], [1])])
    merged = append_rows(batch, extra, minilm_tokenizer.pad_token_id)
    assert merged["input_ids"].shape == (3, batch["input_ids"].shape[1])
    assert merged["in_labeled"].tolist() == [0, 0, 1]
    # "hello" is [CLS] hello [SEP]; the rest is padding with a zero mask.
    assert merged["attention_mask"][2].sum() == 3 and (merged["input_ids"][2, 3:] == minilm_tokenizer.pad_token_id).all()


def test_labeled_draws_take_every_row_of_l_once_per_shuffle_and_depend_only_on_the_index():
    draws = LabeledDraws([{"i": i} for i in range(10)], 4, seed=0)
    seen = [row["i"] for m in range(5) for row in draws.draw(m)]  # 20 rows = two full shuffles of L
    assert sorted(seen[:10]) == sorted(seen[10:]) == list(range(10))
    assert seen[:10] != seen[10:]  # each shuffle is its own
    assert draws.draw(3) == LabeledDraws([{"i": i} for i in range(10)], 4, seed=0).draw(3)
    assert all(row["in_labeled"] == 1 for row in draws.draw(7))


class TestUUTrainerLoss:
    @pytest.mark.parametrize("loss", ["robust_uu", "uu", "pn", "gold"])
    def test_compute_loss_equals_training_risk(self, tiny_bert_dir, minilm_tokenizer, tmp_path, loss):
        config = make_config(tiny_bert_dir, tmp_path)
        model = new_classifier(config, minilm_tokenizer, seed=0).eval()
        trainer = UUTrainer(model=model, args=training_arguments(config, tmp_path, seed=0, metric=None),
                            data_collator=UUCollator(minilm_tokenizer), loss=loss, priors=PRIORS, gamma=-0.001)
        batch = trainer.data_collator(rows(minilm_tokenizer, TEXTS, IN_U1, GOLD))
        with torch.no_grad():
            logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
                           token_type_ids=batch["token_type_ids"]).logits.squeeze(-1)
            expected = training_risk(loss, logits, in_u1=batch["in_u1"].bool(), gold=batch["gold"], priors=PRIORS,
                                     gamma=-0.001)
            assert trainer.compute_loss(model, dict(batch)).item() == pytest.approx(expected.item(), abs=1e-6)

    def test_l_rows_add_lambda_times_their_pn_risk(self):
        logits = torch.tensor([2.0, -1.0, 0.5, 3.0, -2.0])
        in_u1 = torch.tensor([True, False, True, False, False])
        gold = torch.tensor([1, 0, -1, 1, 0])
        in_labeled = torch.tensor([False, False, False, True, True])
        got = corpus_and_labeled_risk("robust_uu", logits, in_u1=in_u1, gold=gold, in_labeled=in_labeled,
                                      priors=PRIORS, gamma=-0.001, labeled_weight=0.5)
        corpus = training_risk("robust_uu", logits[:3], in_u1=in_u1[:3], gold=gold[:3], priors=PRIORS, gamma=-0.001)
        # L rows: gold 1 with logit 3 and gold 0 with logit -2 → mean(sigmoid(-3), sigmoid(-2)).
        labeled = (torch.sigmoid(torch.tensor(-3.0)) + torch.sigmoid(torch.tensor(-2.0))) / 2
        assert got.item() == pytest.approx(corpus.item() + 0.5 * labeled.item(), abs=1e-6)
        assert labeled.item() == pytest.approx(pn_risk(logits[3:], gold[3:]).item())

    def test_refuses_remove_unused_columns(self, tiny_bert_dir, minilm_tokenizer, tmp_path):
        config = make_config(tiny_bert_dir, tmp_path)
        args = training_arguments(config, tmp_path, seed=0, metric=None)
        args.remove_unused_columns = True
        with pytest.raises(ValueError, match="remove_unused_columns=False"):
            UUTrainer(model=new_classifier(config, minilm_tokenizer, seed=0), args=args,
                      data_collator=UUCollator(minilm_tokenizer), loss="pn", priors=None, gamma=0.0)


def test_evaluation_metrics_are_risks_over_all_rows_at_once():
    from transformers import EvalPrediction

    logits = np.array([[1.0], [-0.5], [2.0], [-3.0], [0.1], [2.0], [-1.0]], dtype=np.float32)
    in_u1 = np.array([1, 0, 1, 0, 0, 1, 0])
    gold = np.array([1, 0, 1, 0, -1, 0, 0])
    in_labeled = np.array([0, 0, 0, 0, 0, 1, 1])  # the last two rows are L: gold 0 with logits 2 and -1
    metric = validation_risk_metric("robust_uu", PRIORS, -0.001)(EvalPrediction(logits, (in_u1, gold, in_labeled)))
    expected = training_risk("robust_uu", torch.tensor(logits[:5, 0]), in_u1=torch.tensor(in_u1[:5]).bool(),
                             gold=torch.tensor(gold[:5]), priors=PRIORS, gamma=-0.001)
    labeled = (torch.sigmoid(torch.tensor(2.0)) + torch.sigmoid(torch.tensor(-1.0))) / 2  # mean sigmoid(g) on safe rows
    assert metric == {"risk": pytest.approx(expected.item(), abs=1e-6), "labeled_risk": pytest.approx(labeled.item())}


def test_training_arguments_select_by_validation_risk_with_length_grouping(tiny_bert_dir, tmp_path):
    args = training_arguments(make_config(tiny_bert_dir, tmp_path, warmup_ratio=0.03), tmp_path, seed=3, metric="risk")
    assert (args.metric_for_best_model, args.greater_is_better, args.load_best_model_at_end) == ("risk", False, True)
    assert args.eval_strategy == "epoch" and args.save_strategy == "epoch"
    assert args.train_sampling_strategy == "group_by_length" and args.activation_checkpointing is False
    assert args.remove_unused_columns is False and args.label_names == ["in_u1", "gold", "in_labeled"]
    assert args.seed == 3 and args.get_warmup_steps(1000) == 30


def test_epoch_history_pairs_training_and_validation_risk():
    log = [{"loss": 0.8, "epoch": 0.5, "step": 2}, {"loss": 0.6, "epoch": 1.0, "step": 4},
           {"eval_risk": 0.5, "eval_loss": 0.51, "epoch": 1.0, "step": 4}, {"loss": 0.4, "epoch": 2.0, "step": 8},
           {"eval_risk": 0.45, "eval_labeled_risk": 0.3, "epoch": 2.0, "step": 8},
           {"train_loss": 0.6, "epoch": 2.0, "step": 8}]
    assert epoch_history(log) == [
        {"epoch": 1, "step": 4, "validation_risk": 0.5, "train_risk": pytest.approx(0.7)},
        {"epoch": 2, "step": 8, "validation_risk": 0.45, "labeled_risk": 0.3, "train_risk": 0.4},
    ]


def test_4bit_on_cpu_is_a_one_line_error(tiny_bert_dir, minilm_tokenizer, tmp_path, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    config = make_config(tiny_bert_dir, tmp_path, load_in_4bit=True, lora_r=8)
    with pytest.raises(ValueError, match=r"load_in_4bit needs a CUDA GPU.*set finetune.load_in_4bit false"):
        new_classifier(config, minilm_tokenizer, seed=0)
    check_quantization(False)  # nothing to check without 4-bit


class TestFinetuneConfig:
    def test_4bit_needs_lora(self):
        with pytest.raises(ValueError, match="load_in_4bit needs LoRA"):
            FinetuneConfig(load_in_4bit=True, lora_r=0)

    def test_one_mixed_precision_mode(self):
        with pytest.raises(ValueError, match="choose one"):
            FinetuneConfig(bf16=True, fp16=True)

    def test_backbone_finetune_and_unknown_finetune_keys(self):
        config = config_from_dict(RefineConfig, {"classifier": {"backbone": "finetune"}, "finetune": {"lora_r": 8}})
        assert config.classifier.backbone == "finetune" and config.finetune.lora_r == 8
        with pytest.raises(ConfigError, match="did you mean finetune.learning_rate"):
            config_from_dict(RefineConfig, {"finetune": {"learning_rat": 1e-4}})


def test_decoder_tokenizer_gets_a_pad_token_and_right_padding(tiny_llama_dir):
    tokenizer = load_tokenizer(tiny_llama_dir)
    assert tokenizer.pad_token_id is not None and tokenizer.padding_side == "right"


class UnpicklingLeavesAMark:
    """A pickle payload that writes a file when a full unpickler loads it (what a planted checkpoint could do)."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        from pathlib import Path

        return Path.write_text, (Path(self.marker), "unpickled")


def planted_checkpoint(work_dir, marker, *, deepspeed: bool):
    """A complete-looking Trainer checkpoint; with ``deepspeed``, a global_step folder whose state runs code."""
    folder = work_dir / "checkpoint-4"
    folder.mkdir(parents=True)
    (folder / "trainer_state.json").write_text("{}")
    torch.save({"state": {}, "param_groups": []}, folder / "optimizer.pt")
    if deepspeed:
        (folder / "global_step4").mkdir()
        (folder / "latest").write_text("global_step4")
        torch.save({"module": UnpicklingLeavesAMark(marker)}, folder / "global_step4" / "mp_rank_00_model_states.pt")
    return folder


def test_resuming_from_deepspeed_states_needs_the_users_word(tmp_path, monkeypatch):
    """DeepSpeed unpickles its checkpoint states with torch.load(weights_only=False): a checkpoint planted in a run
    folder could run code. silr refuses to resume from one unless $SILR_RESUME_PICKLED_CHECKPOINTS=1."""
    from refine.finetune import RESUME_PICKLED_ENV, last_complete_checkpoint

    monkeypatch.delenv(RESUME_PICKLED_ENV, raising=False)
    marker = tmp_path / "marker.txt"
    folder = planted_checkpoint(tmp_path / "work", marker, deepspeed=True)
    with pytest.raises(ValueError, match=r"checkpoint-4 holds DeepSpeed states \(global_step4/mp_rank_00_model_states"
                                         r"\.pt\), which DeepSpeed reads with torch\.load\(weights_only=False\).* set "
                                         r"SILR_RESUME_PICKLED_CHECKPOINTS=1 .* or delete .*work to train"):
        last_complete_checkpoint(tmp_path / "work")
    assert not marker.exists() and folder.is_dir()  # nothing read, nothing deleted
    monkeypatch.setenv(RESUME_PICKLED_ENV, "1")
    assert last_complete_checkpoint(tmp_path / "work") == str(folder)
    torch.load(folder / "global_step4" / "mp_rank_00_model_states.pt", weights_only=False)  # what DeepSpeed does
    assert marker.read_text() == "unpickled"  # so the refusal above kept real code from running


def test_trainer_state_pickles_resume_without_asking(tmp_path, monkeypatch):
    """optimizer.pt, scheduler.pt, rng_state.pth: transformers reads them with torch.load(weights_only=True)."""
    from refine.finetune import RESUME_PICKLED_ENV, last_complete_checkpoint, pickled_states

    monkeypatch.delenv(RESUME_PICKLED_ENV, raising=False)
    folder = planted_checkpoint(tmp_path / "work", tmp_path / "marker.txt", deepspeed=False)
    assert pickled_states(folder) == []
    assert last_complete_checkpoint(tmp_path / "work") == str(folder)
