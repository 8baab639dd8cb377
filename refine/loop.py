"""The refine recipe: annotate → (estimate priors → train a fresh robust-UU classifier → relabel) × T.

Reads top to bottom like a training recipe. Each iteration writes its own folder atomically
(``refine/iter_<k>/``: labels, priors, metrics, classifier), so a rerun resumes at the first missing iteration and
ends with the same results as an uninterrupted run.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from refine import distributed
from refine.annotators import annotate_corpus
from refine.baselines import simple_baselines
from refine.classifier_io import ClassifierMeta, save_refined_classifier
from refine.config import RefineConfig
from refine.config_loading import config_to_dict
from refine.corpus import load_corpus
from refine.encoder import Features, cached_features, load_classifier
from refine.errors import SilrError, damaged_folder
from refine.head_training import SELECTION_KEYS, HeadData, predict_logits, train_head
from refine.heads import new_head
from refine.metrics import classification_metrics, flip_count
from refine.objectives import GOLD_LOSSES
from refine.priors import Priors, assess_signal, bootstrap_intervals, estimate_priors
from refine.redact import redact_config
from refine.report import write_report
from refine.rundir import (
    RunDir,
    atomic_dir,
    fingerprint,
    read_json,
    read_parquet,
    write_json,
    write_parquet,
    write_yaml,
)
from refine.stopping import stop_reason
from refine.trained import TrainedClassifier

logger = logging.getLogger(__name__)

# Config keys that do not change results: excluded from stage fingerprints so they can change on resume.
NON_RESULT_KEYS = {
    "name", "output_dir", "overwrite_output_dir", "cache_dir", "loop",
    "classifier.encode_batch_size", "annotator.batch_size", "annotator.max_concurrency", "annotator.max_retries",
    "annotator.request_timeout", "finetune.per_device_eval_batch_size", "finetune.report_to", "finetune.logging_steps",
    "finetune.dataloader_num_workers", "finetune.save_total_limit",
}


SUMMARY_FILE = "summary.json"
PREVIOUS_SUMMARY_FILE = ".summary.previous.json"  # a finished run's summary while a rerun is going on


class NoSignalError(SilrError):
    """The pseudo-labelled sets do not differ enough in their unsafe rate for UU learning.

    At iteration 0, ``annotator_metrics`` holds the annotator's own row (priors, accuracy on L and on the test split).
    """

    annotator_metrics: dict | None = None


def _result_config(config: RefineConfig, sections: tuple[str, ...]) -> dict:
    full = config_to_dict(config)
    out = {}
    for section in sections:
        value = full[section]
        if isinstance(value, dict):
            value = {k: v for k, v in value.items() if f"{section}.{k}" not in NON_RESULT_KEYS}
        out[section] = value
    return out


def annotate_fingerprint(config: RefineConfig) -> dict:
    return _result_config(config, ("data", "annotator"))


def annotator_scores_key(config: RefineConfig, frame: pd.DataFrame) -> str:
    """Key of the annotator's per-text scores: the annotator settings that change a score, and the texts."""
    settings = {k: v for k, v in redact_config(config_to_dict(config)["annotator"]).items()
                if k not in ("threshold", "positive_fraction", "batch_size", "max_concurrency", "max_retries",
                             "request_timeout")}
    return fingerprint({"annotator": settings, "texts": fingerprint({"t": frame["text"].tolist()})})


def refine_fingerprint(config: RefineConfig) -> dict:
    finetune = ("finetune",) if config.classifier.backbone == "finetune" else ()
    return _result_config(config, ("data", "annotator", "priors", "classifier", "train", *finetune))


@dataclass
class Corpus:
    """The corpus with its frozen features and fixed index sets (rows of ``frame``)."""

    frame: pd.DataFrame
    features: Features | None  # None: finetune backbone that needs no frozen features (see needs_frozen_features)
    train: np.ndarray  # rows of the corpus X (annotated, refined)
    test: np.ndarray  # gold test split: evaluation only
    labeled: np.ndarray  # L ⊂ train
    validation: np.ndarray  # ⊂ train, for model selection with pseudo-labels

    @property
    def gold(self) -> np.ndarray:
        return self.frame["gold"].to_numpy()

    def pseudo_labelled(self, labels: np.ndarray) -> Corpus:
        """This corpus without the rows whose pseudo-label is an abstention (-1, from ``column_other: abstain``) in
        its training, validation and labelled index sets: what training and the priors may read. Test rows stay."""
        if (labels >= 0).all():
            return self
        def keep(rows: np.ndarray) -> np.ndarray:
            return rows[labels[rows] >= 0]

        return dataclasses.replace(self, train=keep(self.train), labeled=keep(self.labeled),
                                   validation=keep(self.validation))

    def head_data(self, rows: np.ndarray, labels: np.ndarray) -> HeadData:
        """``labels`` are pseudo-labels of all corpus rows."""
        return HeadData(
            features=self.features.head_input[rows],
            in_u1=torch.as_tensor(labels[rows] == 1),
            gold=torch.as_tensor(self.gold[rows].astype(np.int64)),
        )


def split_priors(config: RefineConfig, corpus: Corpus, labels: np.ndarray, seed: int) -> tuple[Priors, dict]:
    """Priors of the split given by ``labels`` (over the training rows), with bootstrap intervals."""
    method = config.priors.method
    corpus = corpus.pseudo_labelled(labels)
    rows = corpus.train[corpus.gold[corpus.train] >= 0] if method == "oracle" else corpus.labeled
    if len(rows) == 0:
        raise ValueError(
            "priors need gold labels: set data.label_columns (for the labelled set L), or fix priors.pi/theta1/theta2."
        )
    rho = float(labels[corpus.train].mean())
    gold, pseudo = corpus.gold[rows], labels[rows]
    priors = estimate_priors(gold, pseudo, method=method, rho=rho)
    intervals = bootstrap_intervals(gold, pseudo, method=method, rho=rho, level=config.priors.interval_level, seed=seed)
    return priors, intervals


def labeled_per_set(config: RefineConfig, corpus: Corpus, labels: np.ndarray) -> tuple[int, int] | None:
    """How many texts of L fall in U1 and in U2 under ``labels`` (None for oracle priors, which count all gold)."""
    if config.priors.method == "oracle":
        return None
    rows = corpus.pseudo_labelled(labels).labeled
    in_u1 = int((labels[rows] == 1).sum())
    return in_u1, len(rows) - in_u1


def check_signal(priors: Priors, intervals: dict, *, min_prior_gap: float, n_labeled: int, iteration: int,
                 unconfirmed: str = "warn", per_set: tuple[int, int] | None = None, min_per_set: int = 1) -> str:
    """Stop on a split that carries no signal, or whose priors rest on fewer than ``min_per_set`` texts of L in U1 or
    U2 (no evidence); with ``unconfirmed="stop"`` also on one whose signal the labelled set cannot confirm; warn
    loudly on an inverted or unconfirmed one."""
    signal = assess_signal(priors, intervals["gap"], min_prior_gap=min_prior_gap)
    t1, t2 = intervals["theta1"], intervals["theta2"]
    numbers = (
        f"theta1={priors.theta1:.2f} [{t1[0]:.2f}, {t1[1]:.2f}], theta2={priors.theta2:.2f} [{t2[0]:.2f}, {t2[1]:.2f}] "
        f"(90% bootstrap intervals, {n_labeled} labels)"
    )
    source = "the annotator's labels" if iteration == 0 else f"the labels of iteration {iteration}"
    if per_set is not None and min(per_set) < min_per_set:
        message = (
            f"no evidence for the priors of {source}: only {per_set[0]} text(s) of L are pseudo-unsafe and "
            f"{per_set[1]} pseudo-safe (priors.min_labeled_per_set={min_per_set}), so {numbers} come from add-one "
            "smoothing, not from labels. Label more texts (data.num_labeled)"
        )
        if unconfirmed == "stop":
            raise NoSignalError(message + ", or set priors.unconfirmed_signal: warn to refine anyway.")
        logger.warning("%s; refining anyway (priors.unconfirmed_signal=warn).", message)
    if signal == "none":
        raise NoSignalError(
            f"{source} carry no usable signal: {numbers}; |theta1 - theta2| < min_prior_gap={min_prior_gap}, so UU "
            "learning cannot improve on them. Use a stronger annotator or more gold labels (data.num_labeled)."
        )
    if signal == "inverted":
        logger.warning("WARNING: %s are ANTI-CORRELATED with the gold labels: %s. The UU risk stays unbiased "
                       "(it inverts them), but check the annotator's prompt and label mapping.", source, numbers)
    elif signal == "weak" and unconfirmed == "stop":
        lo, hi = intervals["gap"]
        raise NoSignalError(
            f"{source} may carry no signal: theta1 - theta2 = {priors.theta1 - priors.theta2:.2f} with a bootstrap interval "
            f"[{lo:.2f}, {hi:.2f}] that includes 0 ({numbers}); the labelled set cannot confirm the annotator beats "
            "chance, so no refined result would be evidence. Label more texts (data.num_labeled), use a stronger "
            "annotator, or set priors.unconfirmed_signal: warn to refine anyway."
        )
    elif signal == "weak":
        logger.warning("%s may carry no signal: the interval of theta1 - theta2 includes 0 (%s).", source, numbers)
    return signal


def _iteration_row(corpus: Corpus, k: int, labels: np.ndarray, scores: np.ndarray, previous: np.ndarray | None,
                   priors: Priors, intervals: dict, signal: str) -> dict:
    abstained = int((labels < 0).sum())
    answered = corpus.pseudo_labelled(labels)  # the annotator's metrics count the texts it gave a class
    row = {"iteration": k, "rho": float(labels[answered.train].mean()), "signal": signal, **priors.as_dict()}
    for name, (lo, hi) in intervals.items():
        row[f"{name}_lo"], row[f"{name}_hi"] = lo, hi
    if previous is not None:
        had_label = corpus.train[previous[corpus.train] >= 0]
        row["flips"] = flip_count(previous[had_label], labels[had_label])
    else:
        row["flips"] = 0
    row["flip_fraction"] = row["flips"] / len(corpus.train)
    labeled = classification_metrics(corpus.gold[answered.labeled], labels[answered.labeled])
    row["labeled_accuracy"] = labeled.get("accuracy", float("nan"))
    row["n_labeled"] = labeled["n"]
    if abstained:
        row["abstained"] = abstained
    test_rows = corpus.test[labels[corpus.test] >= 0]
    test = classification_metrics(corpus.gold[test_rows], labels[test_rows], scores[test_rows])
    row.update({f"test_{key}": value for key, value in test.items()})
    return row


def _write_iteration(folder: Path, corpus: Corpus, labels, scores, row, extra: dict, save_classifier=None) -> None:
    """Written by the main process; every process returns once the folder is complete."""
    if not distributed.is_main_process():
        distributed.wait_for_everyone()
        return
    with atomic_dir(folder) as tmp:
        frame = pd.DataFrame({
            "id": corpus.frame["id"], "split": corpus.frame["split"], "pseudo_label": labels.astype(np.int8),
            "score": scores.astype(np.float32),
        })
        write_parquet(tmp / "labels.parquet", frame)
        write_json(tmp / "priors.json", {key: row[key] for key in row if key.startswith(("pi", "theta", "gap", "rho"))})
        for name, value in extra.items():
            write_json(tmp / f"{name}.json", value)
        if save_classifier is not None:
            save_classifier(tmp / "classifier")
        write_json(tmp / "metrics.json", row)  # written last: its presence marks a complete iteration
    distributed.wait_for_everyone()


def _read_iteration(folder: Path) -> tuple[np.ndarray, np.ndarray, dict]:
    try:
        frame = read_parquet(folder / "labels.parquet")
        return (frame["pseudo_label"].to_numpy().astype(np.int64), frame["score"].to_numpy(),
                read_json(folder / "metrics.json"))
    except (ValueError, OSError, KeyError) as err:  # metrics.json marks it finished
        raise damaged_folder(folder, err, rerun="rerun (that iteration is recomputed)") from err


def _summary_line(row: dict, total: int, seconds: float) -> str:
    parts = [f"iteration {row['iteration']}/{total}:", f"theta1 {row['theta1']:.2f}, theta2 {row['theta2']:.2f},",
             f"flips {row['flips']},", f"L acc {row['labeled_accuracy']:.3f} (n={row['n_labeled']})"]
    if "test_accuracy" in row:
        parts.append(f", test acc {row['test_accuracy']:.3f} (n={row['test_n']})")
    return " ".join(parts) + f", {seconds:.1f}s"


def needs_frozen_features(config: RefineConfig) -> bool:
    """Frozen features are the frozen backbone's input; a finetune run needs them for the baselines (if asked) and
    for the embedding annotator when it reuses the classifier's encoder."""
    annotator = config.annotator
    reuse = annotator.kind == "embedding" and annotator.model_name_or_path in (None, config.classifier.model_name_or_path)
    return config.classifier.backbone == "frozen" or config.finetune.frozen_baselines or reuse


def prepare_corpus(config: RefineConfig, run: RunDir):
    """Load the corpus, the classifier's base model and the cached features; fix validation rows."""
    extra = (config.annotator.column,) if config.annotator.kind == "column" else ()
    with distributed.main_process_first():  # the main process fills the datasets cache, the others read it
        frame = load_corpus(config.data, extra_columns=extra)
    model = tokenizer = features = None
    if needs_frozen_features(config):
        model, tokenizer = load_classifier(config.classifier.model_name_or_path,
                                           trust_remote_code=config.classifier.trust_remote_code)
        features = cached_features(
            model, tokenizer, frame["text"].tolist(), model_name_or_path=config.classifier.model_name_or_path,
            max_length=config.classifier.max_length, batch_size=config.classifier.encode_batch_size,
            cache_dir=cache_dir(config),
        )
    train = np.flatnonzero(frame["split"].to_numpy() == "train")
    rng = np.random.default_rng(config.train.seed)
    n_validation = max(1, int(round(config.train.validation_fraction * len(train))))
    validation = np.sort(rng.choice(train, n_validation, replace=False))
    corpus = Corpus(
        frame=frame, features=features, train=train, test=np.flatnonzero(frame["split"].to_numpy() == "test"),
        labeled=np.flatnonzero(frame["labeled"].to_numpy()), validation=validation,
    )
    return corpus, model, tokenizer


def cache_dir(config: RefineConfig) -> str:
    return config.cache_dir or str(Path(config.output_dir) / "cache")


def decision_threshold(config: RefineConfig, logits: np.ndarray, priors: Priors) -> float:
    if config.train.threshold == "prior_match":
        return float(np.quantile(logits, 1.0 - priors.pi))
    return 0.0


def train_classifier(config: RefineConfig, corpus: Corpus, model, labels: np.ndarray, priors: Priors, *,
                     seed: int, work_dir: Path) -> TrainedClassifier:
    """Train a fresh classifier on the split given by ``labels`` (the seam between backbones).

    ``work_dir`` holds the fine-tuning Trainer's checkpoints (``refine/trainer_iter_<k>``, beside the iterations).
    """
    if config.classifier.backbone == "finetune":
        # Imported here for start-up time: the fine-tuning backbone imports transformers' Trainer (about 3 s), which
        # a frozen-backbone run never uses.
        from refine.finetune import finetune_classifier

        return finetune_classifier(config, corpus, labels, priors, seed=seed, work_dir=work_dir)
    train_rows = corpus.labeled if config.train.loss == "labeled" else np.setdiff1d(corpus.train, corpus.validation)
    validation = None if config.train.loss == "labeled" else corpus.head_data(corpus.validation, labels)
    head, history = train_head(
        new_head(model, seed=seed), corpus.head_data(train_rows, labels), config=config.train, priors=priors,
        seed=seed, validation=validation, labeled=corpus.head_data(corpus.labeled, labels),
    )

    def save(folder: Path, threshold: float) -> None:
        meta = ClassifierMeta(
            model_name_or_path=config.classifier.model_name_or_path, family=head.family,
            max_length=config.classifier.max_length, threshold=threshold, template=config.data.template,
            trust_remote_code=config.classifier.trust_remote_code,
        )
        save_refined_classifier(folder, head, meta)

    scores = predict_logits(head, corpus.features.head_input).numpy().astype(np.float64)
    # Every process trains the (tiny) head; the main process's scores make the labels, so all agree exactly.
    scores = distributed.broadcast_from_main(scores)
    return TrainedClassifier(scores=scores, history=history, save=save)


def run_refine(config: RefineConfig) -> pd.DataFrame:
    """Run (or resume) the whole refine stage; returns the per-iteration metrics table."""
    run = RunDir(config.output_dir)
    created = not run.root.exists()
    overwrite = config.overwrite_output_dir
    run.check_stage("annotate", annotate_fingerprint(config), overwrite=overwrite)
    run.check_stage("refine", refine_fingerprint(config), overwrite=overwrite)
    with distributed.distributed_session():  # joins (and at the end leaves) a multi-process launch's group
        try:
            return _run(config, run)
        except BaseException:
            fresh = created and not (run.stage("refine") / "iter_0" / "metrics.json").exists()
            if fresh and distributed.is_main_process():
                shutil.rmtree(run.root, ignore_errors=True)  # a fresh run that produced nothing leaves nothing behind
            elif distributed.is_main_process():
                _restore_previous_summary(run.stage("refine"))
            raise


def _run(config: RefineConfig, run: RunDir) -> pd.DataFrame:
    corpus, model, tokenizer = prepare_corpus(config, run)
    if distributed.is_main_process():
        write_yaml(run.root / "config.yaml", config_to_dict(config))
    annotations, refine_dir = _annotate(config, run, corpus, model, tokenizer)
    iterations, patience = config.loop.iterations, _patience(config)

    start = time.perf_counter()
    labels, row = _annotator_iteration(config, corpus, annotations, refine_dir / "iter_0")
    logger.info(_summary_line(row, iterations, time.perf_counter() - start))
    rows = [row]
    for k in range(1, iterations + 1):
        start = time.perf_counter()
        labels, row = _refined_iteration(config, corpus, model, refine_dir, k, rows[-1], labels)
        logger.info(_summary_line(row, iterations, time.perf_counter() - start))
        rows.append(row)
        stop = stop_reason(rows, iterations=iterations, loss=config.train.loss,
                           early_stop_flip_fraction=config.loop.early_stop_flip_fraction, patience=patience)
        if stop is not None:
            logger.log(logging.WARNING if stop.warning else logging.INFO, stop.message)
            break

    table = pd.DataFrame(rows)
    if distributed.is_main_process():
        _write_baselines_and_report(config, corpus, model, refine_dir, table)
        (refine_dir / PREVIOUS_SUMMARY_FILE).unlink(missing_ok=True)
    distributed.wait_for_everyone()
    return table


def _annotate(config: RefineConfig, run: RunDir, corpus: Corpus, model, tokenizer) -> tuple[pd.DataFrame, Path]:
    """Claim the annotate and refine stages and annotate the corpus; returns the annotations and the refine folder.

    The main process claims the stages and annotates first (hf/openai annotators run there alone); the others then
    find its stage.json and labels.parquet and read them.
    """
    with distributed.main_process_first():
        annotate_dir = run.claim_stage("annotate", annotate_fingerprint(config), overwrite=config.overwrite_output_dir)
        annotations = annotate_corpus(
            corpus.frame, config.annotator, annotate_dir,
            sentence_embeddings=corpus.features.mean if corpus.features is not None else None,
            encoder=(model, tokenizer) if model is not None else None,
            encoder_name=config.classifier.model_name_or_path,
            score_cache_dir=Path(cache_dir(config)) / f"annotator-{annotator_scores_key(config, corpus.frame)}",
        )
        refine_dir = run.claim_stage("refine", refine_fingerprint(config), overwrite=config.overwrite_output_dir)
        if distributed.is_main_process():
            # Rewritten when this run ends. Until then a previous run's summary would send `reward export` (best,
            # last) to iterations this run may not reach, so it is set aside, and put back if this run fails.
            summary = refine_dir / SUMMARY_FILE
            if summary.exists():
                os.replace(summary, refine_dir / PREVIOUS_SUMMARY_FILE)
    return annotations, refine_dir


def _restore_previous_summary(refine_dir: Path) -> None:
    """After a failed rerun: the finished run's summary.json back in place (its iterations are still there, unchanged:
    a rerun only adds iterations), so `reward export --iteration best` keeps working."""
    previous = refine_dir / PREVIOUS_SUMMARY_FILE
    if previous.exists() and not (refine_dir / SUMMARY_FILE).exists():
        os.replace(previous, refine_dir / SUMMARY_FILE)


def _patience(config: RefineConfig) -> int | None:
    """``loop.patience``, or None (with a warning) where training sees L, so that L cannot judge the iterations."""
    if config.loop.patience is not None and not labeled_is_held_out(config):
        logger.warning("loop.patience is ignored: L is trained on (train.loss=%s, train.labeled_weight=%s), so its "
                       "accuracy cannot tell a better iteration from a worse one.", config.train.loss,
                       config.train.labeled_weight)
        return None
    return config.loop.patience


def _annotator_iteration(config: RefineConfig, corpus: Corpus, annotations: pd.DataFrame,
                         folder: Path) -> tuple[np.ndarray, dict]:
    """Iteration 0, the annotator's own labels: read back, or checked for signal and written; returns labels and row.

    Raises:
        NoSignalError: If the annotator's labels carry no (confirmed) signal; it holds the annotator's row.
    """
    if distributed.exists_on_main(folder / "metrics.json"):
        labels, _, row = _read_iteration(folder)
        return labels, row
    labels = annotations["pseudo_label"].to_numpy().astype(np.int64)
    scores = annotations["annotator_score"].to_numpy().astype(np.float64)
    priors, intervals = split_priors(config, corpus, labels, seed=config.data.seed)
    signal = assess_signal(priors, intervals["gap"], min_prior_gap=config.priors.min_prior_gap)
    row = _iteration_row(corpus, 0, labels, scores, None, priors, intervals, signal)
    try:
        check_signal(priors, intervals, min_prior_gap=config.priors.min_prior_gap, n_labeled=len(corpus.labeled),
                     iteration=0, unconfirmed=config.priors.unconfirmed_signal,
                     per_set=labeled_per_set(config, corpus, labels), min_per_set=config.priors.min_labeled_per_set)
    except NoSignalError as err:
        err.annotator_metrics = row  # the annotator's own accuracy etc., for callers that report it
        raise
    _write_iteration(folder, corpus, labels, scores, row, {})
    return labels, read_json(folder / "metrics.json")  # the same types and key order as a resumed run


def _refined_iteration(config: RefineConfig, corpus: Corpus, model, refine_dir: Path, k: int, previous_row: dict,
                       previous_labels: np.ndarray) -> tuple[np.ndarray, dict]:
    """Iteration ``k`` >= 1: read back, or trained on the previous labels, relabelled and written; returns its labels
    and metric row."""
    folder = refine_dir / f"iter_{k}"
    if distributed.exists_on_main(folder / "metrics.json"):
        labels, _, row = _read_iteration(folder)
        return labels, row
    if k == 1 and config.priors.pi is not None:
        priors = Priors(config.priors.pi, config.priors.theta1, config.priors.theta2)
    else:
        priors = Priors(previous_row["pi"], previous_row["theta1"], previous_row["theta2"])
    trained = train_classifier(config, corpus.pseudo_labelled(previous_labels), model, previous_labels, priors,
                               seed=config.train.seed + k, work_dir=refine_dir / f"trainer_iter_{k}")
    scores = trained.scores
    threshold = decision_threshold(config, scores[corpus.train], priors)
    labels = (scores > threshold).astype(np.int64)
    new_priors, intervals = split_priors(config, corpus, labels, seed=config.data.seed + k)
    signal = assess_signal(new_priors, intervals["gap"], min_prior_gap=config.priors.min_prior_gap)
    per_set = labeled_per_set(config, corpus, labels)
    if per_set is not None and min(per_set) < config.priors.min_labeled_per_set:
        signal = "none"  # priors of the next iteration would rest on smoothing alone
    if labels[corpus.train].min() == labels[corpus.train].max():
        signal = "collapsed"
    row = _iteration_row(corpus, k, labels, scores, previous_labels, new_priors, intervals, signal)
    row.update({"threshold": threshold, "trained_with": priors.as_dict(),
                "best_epoch": _best_epoch(trained.history, config.train.selection)})
    _write_iteration(folder, corpus, labels, scores, row, {"history": trained.history},
                     functools.partial(trained.save, threshold=threshold))
    return labels, read_json(folder / "metrics.json")  # the same types and key order as a resumed run


def _write_baselines_and_report(config: RefineConfig, corpus: Corpus, model, refine_dir: Path,
                                table: pd.DataFrame) -> None:
    """The baselines (computed once per run folder) and the report; main process only."""
    baselines_path = refine_dir / "baselines.json"
    if baselines_path.exists():
        baselines = read_json(baselines_path)
    else:
        baselines = simple_baselines(corpus, model, config) if corpus.features is not None else {}
        write_json(baselines_path, baselines)
    write_report(refine_dir, table, baselines)


def labeled_is_held_out(config: RefineConfig) -> bool:
    """Whether training never sees L's gold labels, so that accuracy on L is an honest guide between iterations."""
    return config.train.labeled_weight == 0 and config.train.loss not in GOLD_LOSSES


def _best_epoch(history: list[dict], selection: str) -> int:
    key = SELECTION_KEYS[selection]
    if history and key in history[0]:
        return int(min(history, key=lambda r: r[key])["epoch"])
    return len(history)
