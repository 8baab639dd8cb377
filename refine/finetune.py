"""The fine-tuning backbone (``classifier.backbone: finetune``): one iteration's classifier trained by a Trainer.

Per iteration, :func:`finetune_classifier`:

1. loads a fresh ``AutoModelForSequenceClassification`` (one logit) from the base model, seeded; decoders get their
   EOS token as pad token and score the last non-pad token. Optionally 4-bit NF4 (QLoRA) and LoRA adapters, with the
   classification head (``classifier``/``score``, and BERT's pooler) trained in full and saved (``modules_to_save``);
2. trains it with :class:`refine.uu_trainer.UUTrainer` on the training rows (corpus minus validation rows, or L for
   ``loss: labeled``), evaluating each epoch the same objective on the pseudo-labelled validation rows and the
   supervised risk on L, and keeping the best epoch by ``train.selection`` (``load_best_model_at_end``). Batches are
   length-grouped and padded per batch; checkpoints go to ``work_dir`` so an interrupted iteration resumes;
3. saves the best weights through the Trainer (which gathers DeepSpeed ZeRO-3 shards), reloads them as a plain
   model with LoRA merged, and scores every corpus row with it (sharded across processes, corpus order);
4. returns the scores with ``save(folder, threshold)``, which writes that same model as a standard Hugging Face folder
   (:func:`refine.classifier_io.save_refined_model`), so the saved classifier reproduces the scores.
"""

from __future__ import annotations

import gc
import importlib.util
import json
import logging
import os
import pickle
import re
import shutil
import time
from pathlib import Path

import numpy as np
import torch

from refine import distributed
from refine.classifier_io import ClassifierMeta, load_lora_adapters, save_refined_model
from refine.encoder import predict_unsafe_logits
from refine.errors import one_line
from refine.heads import head_family
from refine.packaged_models import locate_model
from refine.priors import Priors
from refine.trained import TrainedClassifier
from refine.transformers_setup import DTYPES, load_classifier_tokenizer
from refine.uu_trainer import LABEL_COLUMNS, UUCollator, UUTrainer, validation_risk_metric

logger = logging.getLogger(__name__)

# Set to 1 to resume from a checkpoint with DeepSpeed states, which DeepSpeed unpickles (see pickled_states).
RESUME_PICKLED_ENV = "SILR_RESUME_PICKLED_CHECKPOINTS"


def check_quantization(load_in_4bit: bool) -> None:
    """Fail early, in one line, where 4-bit loading cannot work."""
    if not load_in_4bit:
        return
    if not torch.cuda.is_available():
        raise ValueError(
            "finetune.load_in_4bit needs a CUDA GPU (bitsandbytes NF4), and this machine has none; set "
            "finetune.load_in_4bit false to fine-tune in full precision on CPU."
        )
    if importlib.util.find_spec("bitsandbytes") is None:
        raise ValueError(
            "finetune.load_in_4bit needs bitsandbytes, which is not installed; pip install bitsandbytes (or "
            "silr[gpu]), or set finetune.load_in_4bit false."
        )


def load_tokenizer(model_name_or_path: str, *, trust_remote_code: bool = False):
    """The base model's tokenizer, padding and truncating on the right (as ``refine.encoder.load_classifier`` and the
    exported reward model), with EOS as pad token when it has none (decoders); see
    :func:`refine.transformers_setup.load_classifier_tokenizer`."""
    location = locate_model(model_name_or_path, setting="classifier.model_name_or_path")
    return load_classifier_tokenizer(location.path, trust_remote_code=trust_remote_code)


def new_classifier(config, tokenizer, *, seed: int):
    """A fresh one-logit classifier from the base model, seeded, with LoRA / 4-bit as configured."""
    from transformers import AutoModelForSequenceClassification, set_seed

    ft = config.finetune
    check_quantization(ft.load_in_4bit)
    set_seed(seed)  # the new head's initialisation (and LoRA's) depends only on the iteration's seed
    kwargs = {"num_labels": 1, "use_safetensors": True, "trust_remote_code": config.classifier.trust_remote_code}
    if ft.load_in_4bit:
        from transformers import BitsAndBytesConfig

        compute = DTYPES[ft.bnb_4bit_compute_dtype]
        kwargs["quantization_config"] = BitsAndBytesConfig(
            load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True, bnb_4bit_compute_dtype=compute
        )
        kwargs["device_map"] = {"": distributed.device().index or 0}
        kwargs["dtype"] = compute
    path = locate_model(config.classifier.model_name_or_path).path
    model = AutoModelForSequenceClassification.from_pretrained(path, **kwargs)
    model.config.pad_token_id = tokenizer.pad_token_id
    if ft.load_in_4bit:
        from peft import prepare_model_for_kbit_training

        model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=ft.gradient_checkpointing)
    if ft.lora_r > 0:
        from peft import LoraConfig, get_peft_model

        # peft adds the head (`classifier` / `score`) to modules_to_save for SEQ_CLS; BERT's pooler is part of the
        # head on the frozen path (refine.heads), so it is trained in full here too.
        extra = ["pooler"] if getattr(getattr(model, "bert", None), "pooler", None) is not None else None
        lora = LoraConfig(
            task_type="SEQ_CLS", r=ft.lora_r, lora_alpha=ft.lora_alpha, lora_dropout=ft.lora_dropout,
            target_modules=ft.lora_target_modules, modules_to_save=extra,
        )
        model = get_peft_model(model, lora)
    return model


def training_arguments(config, output_dir: Path, *, seed: int, metric: str | None):
    """``TrainingArguments`` from the ``finetune`` section (transformers 5.24 names).

    ``metric``: the evaluation metric that picks the epoch kept (``risk`` or ``labeled_risk``); None: no
    evaluation, the last epoch is kept.
    """
    validate = metric is not None
    from transformers import TrainingArguments

    ft = config.finetune
    kwargs = dict(
        output_dir=str(output_dir), seed=seed, data_seed=seed,
        per_device_train_batch_size=ft.per_device_train_batch_size,
        per_device_eval_batch_size=ft.per_device_eval_batch_size,
        gradient_accumulation_steps=ft.gradient_accumulation_steps, num_train_epochs=ft.num_train_epochs,
        learning_rate=ft.learning_rate, lr_scheduler_type=ft.lr_scheduler_type, weight_decay=ft.weight_decay,
        max_grad_norm=ft.max_grad_norm, optim=ft.optim, bf16=ft.bf16, fp16=ft.fp16,
        report_to=ft.report_to, logging_steps=ft.logging_steps,
        dataloader_num_workers=ft.dataloader_num_workers, deepspeed=ft.deepspeed, save_total_limit=ft.save_total_limit,
        save_strategy="epoch", load_best_model_at_end=validate, metric_for_best_model=metric,
        greater_is_better=False if validate else None, label_names=list(LABEL_COLUMNS), remove_unused_columns=False,
        ddp_find_unused_parameters=False, use_cpu=distributed.use_cpu(),
        eval_strategy="epoch" if validate else "no",
        warmup_steps=ft.warmup_ratio,  # a float below 1 is a ratio of the training steps
        # gradient_checkpointing is the deprecated (warning) alias of activation_checkpointing in transformers 5.24.
        activation_checkpointing=ft.gradient_checkpointing,
    )
    if ft.gradient_checkpointing:
        kwargs["activation_checkpointing_kwargs"] = {"use_reentrant": False}  # no enable_input_require_grads needed
    if ft.group_by_length:
        kwargs["train_sampling_strategy"] = "group_by_length"
    return TrainingArguments(**kwargs)


def _rows_dataset(encoded, rows: np.ndarray, labels: np.ndarray, gold: np.ndarray, in_labeled: np.ndarray | None = None):
    import datasets

    columns = {k: [encoded[k][i] for i in rows] for k in encoded}
    columns["in_u1"] = labels[rows].astype(np.int64).tolist()
    columns["gold"] = gold[rows].astype(np.int64).tolist()
    columns["in_labeled"] = np.zeros(len(rows), np.int64).tolist() if in_labeled is None else in_labeled.tolist()
    columns["length"] = [len(ids) for ids in columns["input_ids"]]
    return datasets.Dataset.from_dict(columns)


def epoch_history(log_history: list[dict]) -> list[dict]:
    """Per-epoch ``epoch``, ``step``, ``train_risk`` (mean of the logged training risks), ``validation_risk`` and
    ``labeled_risk`` (the columns of the frozen path's history)."""
    history, losses = [], []
    for entry in log_history:
        if "loss" in entry:
            losses.append(entry["loss"])
        if "eval_risk" in entry or "eval_labeled_risk" in entry:
            row = {"epoch": int(round(entry["epoch"])), "step": int(entry.get("step", 0))}
            for key, name in (("eval_risk", "validation_risk"), ("eval_labeled_risk", "labeled_risk")):
                if key in entry:
                    row[name] = float(entry[key])
            if losses:
                row["train_risk"] = float(np.mean(losses))
            history.append(row)
            losses = []
        if "train_loss" in entry and not history:  # no validation: one row for the whole run
            history.append({"epoch": int(round(entry["epoch"])), "step": int(entry.get("step", 0)),
                            "train_risk": float(entry["train_loss"])})
    return history


def _leave_deepspeed_zero3() -> None:
    """After a ZeRO-3 Trainer, let from_pretrained build a whole model again (not zero.Init-partitioned params)."""
    from transformers.integrations.deepspeed import unset_hf_deepspeed_config

    unset_hf_deepspeed_config()


def load_trained(config, folder: Path, tokenizer):
    """The weights the Trainer saved in ``folder`` as a plain classifier: LoRA merged, in the saving dtype."""
    from transformers import AutoModelForSequenceClassification

    dtype = torch.bfloat16 if config.finetune.bf16 else torch.float32
    trust = config.classifier.trust_remote_code
    if (folder / "adapter_config.json").is_file():
        # Merged into a full-precision copy of the base (never into 4-bit weights, which would lose the update).
        base = AutoModelForSequenceClassification.from_pretrained(
            locate_model(config.classifier.model_name_or_path).path, num_labels=1, use_safetensors=True,
            trust_remote_code=trust, dtype=dtype,
        )
        base.config.pad_token_id = tokenizer.pad_token_id
        model = load_lora_adapters(base, folder)
    else:
        model = AutoModelForSequenceClassification.from_pretrained(
            folder, use_safetensors=True, trust_remote_code=trust, dtype=dtype
        )
    model.config.pad_token_id = tokenizer.pad_token_id
    return model.eval()


def build_trainer(config, corpus, labels: np.ndarray, priors: Priors | None, *, seed: int, work_dir: Path,
                  tokenizer) -> UUTrainer:
    """A :class:`UUTrainer` over a fresh classifier, the training rows and the validation rows of ``corpus``.

    Arguments as in :func:`finetune_classifier`; ``tokenizer`` from :func:`load_tokenizer`.
    """
    ft, train_config = config.finetune, config.train
    encoded = tokenizer(corpus.frame["text"].tolist(), truncation=True, max_length=config.classifier.max_length)
    gold = corpus.gold
    labeled_only = train_config.loss == "labeled"
    train_rows = corpus.labeled if labeled_only else np.setdiff1d(corpus.train, corpus.validation)
    train_dataset = _rows_dataset(encoded, train_rows, labels, gold)
    # Evaluation rows: the validation rows (none for loss: labeled) and L, flagged; see refine.uu_trainer.
    validation = np.empty(0, np.int64) if labeled_only else corpus.validation
    eval_rows = np.concatenate([validation, corpus.labeled]).astype(np.int64)
    in_labeled = np.concatenate([np.zeros(len(validation), np.int64), np.ones(len(corpus.labeled), np.int64)])
    eval_dataset = _rows_dataset(encoded, eval_rows, labels, gold, in_labeled) if len(eval_rows) else None
    if train_config.selection == "labeled":
        metric = "labeled_risk" if len(corpus.labeled) else None
    else:
        metric = "risk" if len(validation) else None
    labeled_rows = None
    if train_config.labeled_weight > 0 and not labeled_only and len(corpus.labeled):
        labeled_rows = [{k: encoded[k][i] for k in encoded} | {"in_u1": int(labels[i]), "gold": int(gold[i])}
                        for i in corpus.labeled]

    return UUTrainer(
        model=new_classifier(config, tokenizer, seed=seed),
        args=training_arguments(config, Path(work_dir), seed=seed, metric=metric),
        train_dataset=train_dataset, eval_dataset=eval_dataset if metric is not None else None,
        data_collator=UUCollator(tokenizer, pad_to_multiple_of=8 if (ft.bf16 or ft.fp16) else None),
        compute_metrics=validation_risk_metric(train_config.loss, priors, train_config.gamma, train_config.surrogate),
        loss=train_config.loss, priors=priors, gamma=train_config.gamma, surrogate=train_config.surrogate,
        labeled_weight=train_config.labeled_weight,
        labeled_rows=labeled_rows, labeled_per_step=ft.labeled_per_step,
    )


def last_complete_checkpoint(work_dir: Path) -> str | None:
    """The newest ``checkpoint-N`` in ``work_dir`` that the Trainer finished writing, or None; the same on every process.

    ``trainer_state.json`` is the last file a Trainer checkpoint gets, so a folder without it was cut off mid-save
    (weights without optimizer state, or a truncated file): the main process removes it and training resumes from
    the one before (or from the start). The main process decides; the others get its answer.

    A checkpoint holding DeepSpeed states is refused unless ``$SILR_RESUME_PICKLED_CHECKPOINTS`` is 1 (see
    :func:`pickled_states`); every process raises the same error.

    Raises:
        ValueError: If the checkpoint to resume from holds DeepSpeed states and resuming from them was not allowed.
    """
    answer = {}
    if distributed.is_main_process():
        chosen = _newest_complete_checkpoint(work_dir)
        if chosen:
            answer = {"path": chosen, "pickled": [str(p.relative_to(chosen)) for p in pickled_states(chosen)]}
    answer = json.loads(str(distributed.broadcast_from_main(np.array(json.dumps(answer)))))
    if answer.get("pickled") and os.environ.get(RESUME_PICKLED_ENV) != "1":
        shown = ", ".join(answer["pickled"][:2]) + (" ..." if len(answer["pickled"]) > 2 else "")
        raise ValueError(
            f"{answer['path']} holds DeepSpeed states ({shown}), which DeepSpeed reads with torch.load(weights_only="
            "False), so a file planted in the run folder could run code; silr resumes from them only if you say so: "
            f"set {RESUME_PICKLED_ENV}=1 if you made this run folder, or delete {work_dir} to train this iteration "
            "from its start."
        )
    return answer.get("path")


def pickled_states(checkpoint: str | os.PathLike) -> list[Path]:
    """The files of a Trainer checkpoint that resuming would read with a full (code-running) unpickler.

    Those are DeepSpeed's ``global_step*/`` states (``mp_rank_*_model_states.pt``, ``*_optim_states.pt``): DeepSpeed
    loads them with ``torch.load(weights_only=False)``. The Trainer's own state files (``optimizer.pt``,
    ``scheduler.pt``, ``rng_state*.pth``, ``scaler.pt``) are pickles too, but transformers 5 reads each with
    ``torch.load(weights_only=True)``, whose unpickler builds only tensors and plain containers (plus the numpy types
    of the random state, allowlisted by ``transformers.trainer_pt_utils.safe_globals``) and runs no code, so they are
    not listed; the weights are safetensors, and ``training_args.bin`` is never read on resume.
    """
    return sorted(p for step in Path(checkpoint).glob("global_step*") for p in step.rglob("*") if p.is_file())


def _newest_complete_checkpoint(work_dir: Path) -> str | None:
    if not work_dir.is_dir():
        return None
    steps = sorted((int(m.group(1)), d) for d in work_dir.iterdir()
                   if d.is_dir() and (m := re.fullmatch(r"checkpoint-(\d+)", d.name)))
    for _, folder in reversed(steps):
        if (folder / "trainer_state.json").is_file():
            return str(folder)
        logger.warning("%s was not finished (no trainer_state.json); removed, resuming from the one before", folder)
        shutil.rmtree(folder, ignore_errors=True)
    return None


def finetune_classifier(config, corpus, labels: np.ndarray, priors: Priors | None, *, seed: int,
                        work_dir: Path) -> TrainedClassifier:
    """Fine-tune a fresh classifier on the split given by ``labels`` and score every corpus row with it.

    Args:
        config: The run config (``classifier``, ``train`` and ``finetune`` sections).
        corpus: The corpus (``refine.loop.Corpus``): texts, gold labels, train/validation/L rows.
        labels: Pseudo-labels of every corpus row (1 = U1), shape ``(N,)``.
        priors: Priors of this split (UU losses); None for gold-label losses.
        seed: The iteration's seed (model initialisation, data order, LoRA init).
        work_dir: Trainer output folder (checkpoints), the same path on every process; removed once saved.

    Returns:
        The scores of every corpus row (corpus order, identical on every process), the per-epoch history, and
        ``save(folder, threshold)`` (call it on the main process only).
    """
    started = time.perf_counter()
    work_dir = Path(work_dir)
    tokenizer = load_tokenizer(config.classifier.model_name_or_path, trust_remote_code=config.classifier.trust_remote_code)
    trainer = build_trainer(config, corpus, labels, priors, seed=seed, work_dir=work_dir, tokenizer=tokenizer)
    checkpoint = last_complete_checkpoint(work_dir)
    if checkpoint:
        logger.info("resuming fine-tuning from %s", checkpoint)
    try:
        trainer.train(resume_from_checkpoint=checkpoint)
    except pickle.UnpicklingError as err:  # a state file that torch.load(weights_only=True) refuses to build
        if not checkpoint:
            raise
        raise ValueError(f"cannot resume from {checkpoint}: a state file in it holds more than tensors "
                         f"({one_line(err, 80)}); delete {work_dir} to train this iteration from its start.") from err
    history = epoch_history(trainer.state.log_history)
    logger.info("fine-tuned on %d process(es): %d optimiser steps; lowest validation risk at %s",
                trainer.args.world_size, trainer.state.global_step, trainer.state.best_model_checkpoint)
    trained_dir = work_dir / "trained"
    trainer.save_model(str(trained_dir))  # every process calls it: DeepSpeed ZeRO-3 gathers the shards here
    distributed.wait_for_everyone()
    trainer.accelerator.free_memory()
    del trainer
    _leave_deepspeed_zero3()
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()

    model = load_trained(config, trained_dir, tokenizer).to(distributed.device())
    texts = corpus.frame["text"].tolist()
    scores = predict_unsafe_logits(
        model, tokenizer, texts, max_length=config.classifier.max_length,
        batch_size=config.finetune.per_device_eval_batch_size, across_processes=True,
    )
    logger.info("fine-tuned and relabelled %d texts in %.1fs", len(texts), time.perf_counter() - started)
    try:
        family = head_family(model)
    except ValueError:
        family = model.config.model_type  # trained and saved fine; reward export supports bert and score heads

    def save(folder: Path, threshold: float) -> None:
        meta = ClassifierMeta(
            model_name_or_path=config.classifier.model_name_or_path, family=family,
            max_length=config.classifier.max_length, threshold=threshold, template=config.data.template,
            trust_remote_code=config.classifier.trust_remote_code, format="model",
        )
        save_refined_model(folder, model, tokenizer, meta)
        shutil.rmtree(work_dir, ignore_errors=True)  # the checkpoints are no longer needed

    return TrainedClassifier(scores=scores, history=history, save=save)
