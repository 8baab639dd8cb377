"""Fixtures of the reward tests: a tiny refine run on disk, its exported reward model, and a PPO-ready tiny policy.

The run is built through refine's own code path (``load_classifier`` → ``new_head`` → ``encode_texts`` →
``save_refined_classifier``) on the tiny random BERT, so its ``labels.parquet`` scores are exactly silr's in-process
``unsafe_logit`` of each text.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import yaml

from tests.helpers import single_torch_thread

MAX_LENGTH = 64  # tokens; some texts below are longer, so truncation is exercised
THRESHOLD = 0.1  # unsafe_logit threshold of iteration 1 → reward threshold -0.1
TEMPLATE = "User: {prompt}\nAssistant: {response}"
WORDS = (
    "the a cat dog knife bomb recipe bread kill help please friend hate love weather school money drugs poison "
    "garden music tomorrow quickly never always threaten hurt hello thanks question answer safe danger river"
).split()


def make_texts(n: int, seed: int) -> list[str]:
    """Seeded word salad, 3 to 80 words long (the longest exceed MAX_LENGTH tokens)."""
    rng = np.random.default_rng(seed)
    return [" ".join(rng.choice(WORDS, size=int(rng.integers(3, 80)))) for _ in range(n)]


@dataclass
class TinyRun:
    root: Path
    texts: list[str]  # corpus texts, rows of labels.parquet
    unsafe_logits: dict[int, np.ndarray]  # iteration → silr's in-process unsafe_logit of every text
    split: np.ndarray


def _iteration_row(k: int, labels: np.ndarray, split: np.ndarray) -> dict:
    train = split == "train"
    return {
        "iteration": k, "rho": float(labels[train].mean()), "pi": 0.3 + 0.01 * k, "theta1": 0.8, "theta2": 0.1,
        "pi_lo": 0.2, "pi_hi": 0.4, "theta1_lo": 0.7, "theta1_hi": 0.9, "theta2_lo": 0.05, "theta2_hi": 0.2,
        "flips": 3 * k, "flip_fraction": 0.01 * k, "labeled_accuracy": [0.7, 0.9, 0.8][k], "n_labeled": 50,
        "test_accuracy": [0.65, 0.8, 0.78][k], "test_f1": 0.7, "test_roc_auc": 0.75, "signal": "strong",
    }


def build_tiny_run(root: Path, base_dir: str, n_texts: int = 200) -> TinyRun:
    """A run with iterations 0 (annotator), 1 (best) and 2 (last) of a classifier on the base model in ``base_dir``."""
    from refine.classifier_io import ClassifierMeta, save_refined_classifier
    from refine.encoder import encode_texts, load_classifier
    from refine.heads import new_head
    from refine.rundir import write_json, write_parquet

    model, tokenizer = load_classifier(base_dir)
    texts = make_texts(n_texts, seed=1)
    n_train = int(0.7 * n_texts)
    split = np.array(["train"] * n_train + ["test"] * (n_texts - n_train))
    features = encode_texts(model, tokenizer, texts, max_length=MAX_LENGTH, batch_size=32)
    refine_dir = root / "refine"
    frame = {"id": np.arange(len(texts)), "split": split}
    labels0 = np.random.default_rng(0).integers(0, 2, len(texts))
    (refine_dir / "iter_0").mkdir(parents=True)
    write_parquet(refine_dir / "iter_0" / "labels.parquet",
                  pd.DataFrame({**frame, "pseudo_label": labels0.astype(np.int8), "score": labels0 * 2.0 - 1}))
    write_json(refine_dir / "iter_0" / "metrics.json", _iteration_row(0, labels0, split))
    rows, logits_by_iteration = [_iteration_row(0, labels0, split)], {}
    for k in (1, 2):
        head = new_head(model, seed=k)
        generator = torch.Generator().manual_seed(k)
        output = head.classifier if head.family == "bert" else head.score
        with torch.no_grad():  # large weights: a random tiny BERT's [CLS] states barely differ between texts
            if head.family == "bert":
                head.dense.weight.normal_(0.0, 3.0, generator=generator)
            output.weight.normal_(0.0, 3.0, generator=generator)
        head.eval()
        with torch.no_grad():
            # Rescale the output layer so unsafe_logit has std 1 over the corpus (and mean 0.25 k with a bias).
            raw = head(features.head_input)
            output.weight /= raw.std()
            if output.bias is not None:
                output.bias.copy_((output.bias - raw.mean()) / raw.std() + 0.25 * k)
            logits = head(features.head_input).numpy().astype(np.float64)
        logits_by_iteration[k] = logits
        labels = (logits > THRESHOLD).astype(np.int64)
        folder = refine_dir / f"iter_{k}"
        folder.mkdir()
        meta = ClassifierMeta(model_name_or_path=base_dir, family=head.family, max_length=MAX_LENGTH,
                              threshold=THRESHOLD, template=TEMPLATE)
        save_refined_classifier(folder / "classifier", head, meta)
        write_parquet(folder / "labels.parquet",
                      pd.DataFrame({**frame, "pseudo_label": labels.astype(np.int8), "score": logits.astype(np.float32)}))
        row = {**_iteration_row(k, labels, split), "threshold": THRESHOLD,
               "trained_with": {"pi": 0.3, "theta1": 0.8, "theta2": 0.1}}
        write_json(folder / "priors.json", {"pi": row["pi"], "theta1": row["theta1"], "theta2": row["theta2"]})
        write_json(folder / "metrics.json", row)
        rows.append(row)
    pd.DataFrame(rows).drop(columns=["trained_with"]).to_csv(refine_dir / "metrics.csv", index=False)
    write_json(refine_dir / "summary.json", {"iterations_run": 2, "best_iteration": 1, "annotator_signal": "strong"})
    write_json(refine_dir / "baselines.json", {
        "majority": {"accuracy": 0.6, "n": 60},
        "labeled_logreg": {"accuracy": 0.75, "f1": 0.7, "n": 60},
    })
    config = {
        "name": "tiny", "data": {"path": "corpus.jsonl", "num_labeled": 50, "template": TEMPLATE},
        "annotator": {"kind": "hf", "model_name_or_path": "smollm2"}, "priors": {"method": "consistent"},
        "classifier": {"model_name_or_path": base_dir, "backbone": "frozen", "max_length": MAX_LENGTH},
        "train": {"loss": "robust_uu", "gamma": -0.001, "labeled_weight": 0.5, "num_train_epochs": 40,
                  "learning_rate": 0.001},
        "loop": {"iterations": 2},
    }
    (root / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    return TinyRun(root=root, texts=texts, unsafe_logits=logits_by_iteration, split=split)


@pytest.fixture(scope="session", autouse=True)
def one_torch_thread():
    with single_torch_thread():
        yield


@pytest.fixture(scope="session")
def make_tiny_run():
    """``build_tiny_run(root, base_dir, n_texts=200)``, for tests that need a run on another base model."""
    return build_tiny_run


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory, tiny_bert_dir) -> TinyRun:
    return build_tiny_run(tmp_path_factory.mktemp("runs") / "tiny", tiny_bert_dir)


@pytest.fixture(scope="session")
def exported_dir(tmp_path_factory, tiny_run) -> str:
    """The tiny run's best iteration (1), exported; tests must not modify it."""
    from reward.export import export_reward_model

    out = tmp_path_factory.mktemp("exported") / "reward"
    export_reward_model(tiny_run.root, out, iteration="best")
    return str(out)


@pytest.fixture(scope="session")
def reward_model(exported_dir):
    from reward.model import RewardModel

    return RewardModel.from_pretrained(exported_dir, device="cpu", batch_size=16)


@pytest.fixture(scope="session")
def policy_dir(tmp_path_factory, tiny_llama_dir) -> str:
    """The tiny Llama policy with a pad token distinct from EOS (TRL PPO needs one), embeddings resized."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_llama_dir)
    tokenizer.add_special_tokens({"pad_token": "<|pad|>"})
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_pretrained(tiny_llama_dir)
    model.resize_token_embeddings(len(tokenizer))
    model.config.pad_token_id = tokenizer.pad_token_id
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    folder = tmp_path_factory.mktemp("policy")
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return str(folder)
