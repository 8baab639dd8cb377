"""Speed of refine's fast paths: each figure is a ratio of two ways of doing the same work, measured side by side in
one run on the same data and machine.

(a) Frozen-head path, 5 iterations end to end (``run_refine``: features, embedding annotator, 5 x train head and
    relabel, baselines, report). silr encodes every text once (length-sorted batches, dynamic padding, cached) and
    trains heads on the cached features. The reference way re-encodes every text padded to 512 tokens in every
    iteration (and once for the annotator). Both truncate at 512 tokens, so the work per text is the same.
    openai_moderation: both measured in full. davidson: silr's path measured in full (all 24,783 tweets); the
    re-encode time is EXTRAPOLATED from the padded-512 encoding rate measured on a subsample (labelled as such).
    On all of davidson the zero-shot embedding labeller has no usable signal (theta1 - theta2 < 0.1, the run stops),
    so davidson uses the simulated annotator (gold labels with class-conditional flips) and both data sets use
    ``train.threshold: prior_match``, so every run goes through all 5 iterations.
(b) Fine-tune path (MiniLM, UUTrainer): training and inference texts/s with length-grouped batches and dynamic
    padding versus every batch padded to 512 tokens, on a subsample.
(c) Feature extraction texts/s: ``refine.encoder.encode_texts`` versus a plain ``model(**batch)`` loop at batch 64
    padded to the data set's max_length.

Usage (about 30 minutes on 2 cores; ``--quick`` runs small subsamples in a few minutes, to check the script):
    python benchmarks/refine_speed.py [--quick] [--threads N]
Writes benchmarks/results/refine_speed.json and prints a table.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import sys
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path
from unittest import mock

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import numpy as np
import torch
from transformers import TrainerCallback

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "results" / "refine_speed.json"
DATASETS = {"davidson": "configs/refine/davidson.yaml", "openai_moderation": "configs/refine/openai_moderation.yaml"}
REFERENCE_LENGTH = 512
ITERATIONS = 5


def machine() -> dict:
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.processor())
    return {"cpu": cpu, "cores": os.cpu_count(), "torch_threads": torch.get_num_threads(), "torch": torch.__version__,
            "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
            "load_average_at_start": os.getloadavg()}


def load_config(name: str, overrides: list[str]):
    from refine.config import RefineConfig
    from refine.config_loading import load_config as load

    return load(RefineConfig, REPO / DATASETS[name], overrides)


def corpus_texts(name: str, max_examples: int | None) -> list[str]:
    from refine.corpus import load_corpus

    config = load_config(name, ["--data.max_examples", str(max_examples) if max_examples else "null"])
    return load_corpus(config.data)["text"].tolist()


@torch.inference_mode()
def encode_padded(model, tokenizer, texts: list[str], *, max_length: int, batch_size: int = 64):
    """The reference way: corpus order, every batch padded to ``max_length``; returns refine Features."""
    from refine.encoder import Features
    from refine.heads import backbone_outputs

    head, mean = [], []
    for start in range(0, len(texts), batch_size):
        batch = tokenizer(texts[start : start + batch_size], truncation=True, max_length=max_length,
                          padding="max_length", return_tensors="pt")
        h, m = backbone_outputs(model, batch)
        head.append(h.float())
        mean.append(m.float())
    return Features(head_input=torch.cat(head), mean=torch.cat(mean))


@contextmanager
def stopwatch(record: dict, key: str):
    start = time.perf_counter()
    yield
    record[key] = record.get(key, 0.0) + time.perf_counter() - start


def frozen_path(name: str, *, max_examples: int | None, reference: str, workdir: Path, annotator: str) -> dict:
    """(a): silr's end-to-end 5 iterations, and the reference (re-encode padded to 512 every iteration).

    ``reference``: ``full`` runs it; ``extrapolate`` measures the padded encoding rate on a subsample instead.
    """
    import refine.loop as loop

    overrides = ["--data.max_examples", str(max_examples) if max_examples else "null",
                 "--classifier.max_length", str(REFERENCE_LENGTH), "--loop.iterations", str(ITERATIONS),
                 "--annotator.kind", annotator, "--train.threshold", "prior_match"]
    # The reference encodes once per iteration, plus once for the annotator if it needs sentence embeddings.
    encodings = ITERATIONS + (annotator == "embedding")
    fast_times: dict = {}
    original_features, original_train = loop.cached_features, loop.train_classifier

    def timed_features(*args, **kwargs):
        with stopwatch(fast_times, "feature_extraction_s"):
            return original_features(*args, **kwargs)

    fast_config = load_config(name, [*overrides, "--output_dir", str(workdir / f"{name}-fast")])
    with mock.patch.object(loop, "cached_features", timed_features):
        start = time.perf_counter()
        table = loop.run_refine(fast_config)
        fast_total = time.perf_counter() - start
    n_texts = len(loop.read_parquet(workdir / f"{name}-fast" / "refine" / "iter_0" / "labels.parquet"))
    out = {"texts": n_texts, "iterations": int(table["iteration"].max()), "annotator": annotator,
           "silr_seconds": fast_total, **fast_times}

    if reference == "full":
        slow_times: dict = {}

        def padded_features(model, tokenizer, texts, **kwargs):
            if annotator != "embedding":  # nothing reads these before the first iteration re-encodes
                return original_features(model, tokenizer, texts, **kwargs)
            with stopwatch(slow_times, "reencode_s"):
                return encode_padded(model, tokenizer, texts, max_length=REFERENCE_LENGTH)

        from refine.finetune import load_tokenizer

        tokenizer = load_tokenizer(fast_config.classifier.model_name_or_path)

        def reencode_then_train(config, corpus, model, *args, **kwargs):
            with stopwatch(slow_times, "reencode_s"):
                corpus.features = encode_padded(model, tokenizer, corpus.frame["text"].tolist(),
                                                max_length=REFERENCE_LENGTH)
            return original_train(config, corpus, model, *args, **kwargs)

        slow_config = load_config(name, [*overrides, "--output_dir", str(workdir / f"{name}-slow")])
        with mock.patch.object(loop, "cached_features", padded_features), \
                mock.patch.object(loop, "train_classifier", reencode_then_train):
            start = time.perf_counter()
            loop.run_refine(slow_config)
            out["reference_seconds"] = time.perf_counter() - start
        out["reference_reencode_s"] = slow_times["reencode_s"]
        out["reference"] = f"measured: {encodings} encodings padded to {REFERENCE_LENGTH} (annotator + each iteration)"
    else:
        model, tokenizer = loop.load_classifier("minilm")
        sample = corpus_texts(name, None)
        sample = [sample[i] for i in np.random.default_rng(0).choice(len(sample), 512, replace=False)]
        encode_padded(model, tokenizer, sample[:64], max_length=REFERENCE_LENGTH)  # warm-up
        start = time.perf_counter()
        encode_padded(model, tokenizer, sample, max_length=REFERENCE_LENGTH)
        rate = len(sample) / (time.perf_counter() - start)
        reencode = encodings * n_texts / rate
        out["reference_seconds"] = fast_total - fast_times["feature_extraction_s"] + reencode
        out["reference_reencode_s"] = reencode
        out["reference"] = (f"EXTRAPOLATED: padded-{REFERENCE_LENGTH} encoding rate {rate:.1f} texts/s measured on "
                            f"{len(sample)} random texts, times {encodings} x {n_texts} texts, plus silr's "
                            "non-encoding time")
    out["speedup"] = out["reference_seconds"] / fast_total
    return out


class _StepTimer(TrainerCallback):
    """Times the training steps after ``warmup`` steps (optimizer creation and the first step excluded)."""

    def __init__(self, warmup: int):
        self.warmup, self.start, self.end = warmup, None, None

    def on_step_begin(self, args, state, control, **kwargs):
        if state.global_step == self.warmup:
            self.start = time.perf_counter()

    def on_train_end(self, args, state, control, **kwargs):
        self.end = time.perf_counter()


def finetune_path(name: str, *, n_train: int, n_predict: int, workdir: Path, max_length: int) -> dict:
    """(b): UUTrainer training texts/s and relabelling texts/s, dynamic vs padded to 512."""
    import datasets
    from transformers import TrainingArguments

    from refine.encoder import load_classifier, predict_unsafe_logits
    from refine.finetune import load_tokenizer, new_classifier
    from refine.priors import Priors
    from refine.uu_trainer import UUCollator, UUTrainer

    texts = corpus_texts(name, None)
    rng = np.random.default_rng(0)
    texts = [texts[i] for i in rng.choice(len(texts), max(n_train, n_predict), replace=False)]
    tokenizer = load_tokenizer("minilm")
    config = load_config(name, ["--classifier.backbone", "finetune", "--classifier.max_length", str(max_length)])
    batch, warmup = 32, 1
    encoded = tokenizer(texts[:n_train], truncation=True, max_length=max_length)
    dataset = datasets.Dataset.from_dict({**encoded, "in_u1": rng.integers(0, 2, n_train).tolist(),
                                          "gold": [-1] * n_train, "length": [len(x) for x in encoded["input_ids"]]})
    out = {"train_texts": n_train - warmup * batch, "predict_texts": n_predict, "max_length": max_length}
    for mode in ("dynamic", "padded"):
        args = TrainingArguments(
            output_dir=str(workdir / f"ft-{name}-{mode}"), per_device_train_batch_size=batch, max_steps=n_train // batch,
            learning_rate=5e-5, report_to=[], save_strategy="no", eval_strategy="no", logging_steps=10_000,
            remove_unused_columns=False, label_names=["in_u1", "gold"], use_cpu=not torch.cuda.is_available(),
            disable_tqdm=True, train_sampling_strategy="group_by_length" if mode == "dynamic" else "random",
        )
        timer = _StepTimer(warmup)
        trainer = UUTrainer(
            model=new_classifier(config, tokenizer, seed=0), args=args, train_dataset=dataset,
            data_collator=UUCollator(tokenizer, pad_to_length=None if mode == "dynamic" else REFERENCE_LENGTH),
            callbacks=[timer], loss="robust_uu", priors=Priors(0.3, 0.7, 0.1), gamma=-0.001,
        )
        trainer.train()
        out[f"train_{mode}_texts_per_s"] = (n_train // batch - warmup) * batch / (timer.end - timer.start)

    model, _ = load_classifier("minilm")
    sample = texts[:n_predict]
    predict_unsafe_logits(model, tokenizer, sample[:64], max_length=max_length, batch_size=64)  # warm-up
    start = time.perf_counter()
    predict_unsafe_logits(model, tokenizer, sample, max_length=max_length, batch_size=64)
    out["predict_dynamic_texts_per_s"] = n_predict / (time.perf_counter() - start)
    start = time.perf_counter()
    with torch.inference_mode():
        for i in range(0, n_predict, 64):
            model(**tokenizer(sample[i : i + 64], truncation=True, max_length=REFERENCE_LENGTH, padding="max_length",
                              return_tensors="pt"))
    out["predict_padded_texts_per_s"] = n_predict / (time.perf_counter() - start)
    out["train_speedup"] = out["train_dynamic_texts_per_s"] / out["train_padded_texts_per_s"]
    out["predict_speedup"] = out["predict_dynamic_texts_per_s"] / out["predict_padded_texts_per_s"]
    return out


def extraction(name: str, *, n_texts: int) -> dict:
    """(c): encode_texts vs a plain model(**batch) loop at batch 64 padded to the config's max_length."""
    from refine.encoder import encode_texts, load_classifier

    max_length = load_config(name, []).classifier.max_length
    texts = corpus_texts(name, None)
    texts = [texts[i] for i in np.random.default_rng(1).choice(len(texts), n_texts, replace=False)]
    model, tokenizer = load_classifier("minilm")
    encode_texts(model, tokenizer, texts[:64], max_length=max_length, batch_size=64)  # warm-up
    start = time.perf_counter()
    encode_texts(model, tokenizer, texts, max_length=max_length, batch_size=64)
    silr = n_texts / (time.perf_counter() - start)
    backbone = model.bert
    start = time.perf_counter()
    with torch.inference_mode():
        for i in range(0, n_texts, 64):
            backbone(**tokenizer(texts[i : i + 64], truncation=True, max_length=max_length, padding="max_length",
                                 return_tensors="pt"))
    plain = n_texts / (time.perf_counter() - start)
    return {"texts": n_texts, "max_length": max_length, "silr_texts_per_s": silr, "plain_padded_texts_per_s": plain,
            "speedup": silr / plain}


def print_table(results: dict) -> None:
    print(f"\nmachine: {results['machine']['cpu']}, {results['machine']['cores']} cores, "
          f"{results['machine']['torch_threads']} torch threads, load average at start "
          f"{', '.join(f'{x:.1f}' for x in results['machine']['load_average_at_start'])} (shared machine)")
    print("\n(a) frozen-head path, 5 iterations end to end (truncation at 512 in both)")
    print(f"{'data set':18s} {'texts':>6s} {'silr s':>8s} {'of which features s':>20s} {'reference s':>12s} "
          f"{'speed-up':>9s}  reference")
    for name, row in results["frozen_path"].items():
        print(f"{name:18s} {row['texts']:6d} {row['silr_seconds']:8.1f} {row['feature_extraction_s']:20.1f} "
              f"{row['reference_seconds']:12.1f} {row['speedup']:8.1f}x  {row['reference']}")
    print("\n(b) fine-tune path (MiniLM, UUTrainer), texts/s: length-grouped + dynamic padding vs padded to 512")
    print(f"{'data set':18s} {'train dyn':>10s} {'train 512':>10s} {'x':>6s} {'predict dyn':>12s} {'predict 512':>12s} "
          f"{'x':>6s}")
    for name, row in results["finetune_path"].items():
        print(f"{name:18s} {row['train_dynamic_texts_per_s']:10.1f} {row['train_padded_texts_per_s']:10.1f} "
              f"{row['train_speedup']:5.1f}x {row['predict_dynamic_texts_per_s']:12.1f} "
              f"{row['predict_padded_texts_per_s']:12.1f} {row['predict_speedup']:5.1f}x")
    print("\n(c) feature extraction, texts/s: encode_texts vs plain loop (batch 64, padded to max_length)")
    print(f"{'data set':18s} {'texts':>6s} {'max_len':>7s} {'silr':>8s} {'plain':>8s} {'x':>6s}")
    for name, row in results["extraction"].items():
        print(f"{name:18s} {row['texts']:6d} {row['max_length']:7d} {row['silr_texts_per_s']:8.1f} "
              f"{row['plain_padded_texts_per_s']:8.1f} {row['speedup']:5.1f}x")
    print(f"\nwritten: {RESULTS}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="small subsamples, to check the script (minutes)")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    parser.add_argument("--only", choices=["a", "b", "c"], action="append",
                        help="run only these parts; the others' results already in the JSON file are kept")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    logging.basicConfig(level=logging.WARNING)
    from transformers.utils import logging as transformers_logging

    transformers_logging.set_verbosity_error()  # no per-load report of the new (untrained) head
    parts = set(args.only or ["a", "b", "c"])
    results: dict = {"frozen_path": {}, "finetune_path": {}, "extraction": {}}
    if args.only and RESULTS.is_file():
        results.update(json.loads(RESULTS.read_text()))
    results.update(machine=machine(), quick=args.quick,
                   command=" ".join(["python benchmarks/refine_speed.py", *sys.argv[1:]]))
    began = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="refine_speed_") as tmp:
        workdir = Path(tmp)
        if "c" in parts:
            for name in DATASETS:
                results["extraction"][name] = extraction(name, n_texts=256 if args.quick else 1024)
                save(results)
        if "b" in parts:
            for name in DATASETS:
                results["finetune_path"][name] = finetune_path(
                    name, n_train=64 if args.quick else 96, n_predict=128 if args.quick else 256, workdir=workdir,
                    max_length=load_config(name, []).classifier.max_length,
                )
                save(results)
        if "a" in parts:
            results["frozen_path"]["openai_moderation"] = frozen_path(
                "openai_moderation", max_examples=150 if args.quick else None, reference="full", workdir=workdir,
                annotator="embedding")
            save(results)
            results["frozen_path"]["davidson"] = frozen_path(
                "davidson", max_examples=600 if args.quick else None, reference="extrapolate", workdir=workdir,
                annotator="simulated")
    results["machine"]["load_average_at_end"] = os.getloadavg()
    results["total_seconds"] = time.perf_counter() - began
    save(results)
    print_table(results)


def save(results: dict) -> None:
    """Written after every part, so an interrupted run keeps what it measured."""
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
