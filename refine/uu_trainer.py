"""A thin ``transformers.Trainer`` whose loss is refine's training objective (``refine.objectives.training_risk``).

Everything else comes from the library: gradient accumulation, mixed precision, DDP and DeepSpeed, peft adapters,
``report_to``, checkpoints and resume, evaluation each epoch and ``load_best_model_at_end``.

Columns of a batch (built by :class:`UUCollator`, so ``remove_unused_columns=False``):

- ``input_ids``, ``attention_mask`` (and ``token_type_ids``): padded to the longest text of the batch;
- ``in_u1``: 1 where the pseudo-label is unsafe (the text is in U1), shape ``(batch,)``;
- ``gold``: 1 unsafe, 0 safe, -1 unknown, shape ``(batch,)``;
- ``in_labeled`` (training only): 1 for rows of the labelled set L appended by the Trainer (see below).

**The labelled-set term.** With ``train.labeled_weight = lambda > 0`` the objective is, as on the frozen path,
``risk(corpus rows) + lambda * pn_risk(rows of L)``. Each training micro-batch gets ``labeled_per_step`` rows of L
appended (drawn without replacement from seeded shuffles of L, cycling), flagged ``in_labeled``; one forward pass
scores both, so DDP and DeepSpeed see an ordinary batch. The rows drawn depend only on the micro-batch's index, so a
run resumed from a checkpoint draws the same rows. The mean PN risk over a uniform draw of L is an unbiased
estimate of the PN risk over all of L. Validation batches get no L rows: selection uses the corpus risk alone.

**Selection.** The evaluation set holds the pseudo-labelled validation rows and the rows of L (flagged
``in_labeled``). ``compute_metrics`` (:func:`validation_risk_metric`) evaluates, once over all gathered rows as the
frozen path does, the objective on the validation rows (``eval_risk``) and the supervised risk on the gold labels of L
(``eval_labeled_risk``). ``metric_for_best_model`` is ``risk`` (``train.selection: validation``, no gold label) or
``labeled_risk`` (``selection: labeled``), with ``greater_is_better=False``, so the Trainer keeps the best epoch.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from transformers import Trainer

from refine.losses import pn_risk
from refine.objectives import training_risk
from refine.priors import Priors

MODEL_INPUTS = ("input_ids", "attention_mask", "token_type_ids")
LABEL_COLUMNS = ("in_u1", "gold", "in_labeled")


def corpus_and_labeled_risk(
    loss: str,
    logits: torch.Tensor,
    *,
    in_u1: torch.Tensor,
    gold: torch.Tensor,
    in_labeled: torch.Tensor | None,
    priors: Priors | None,
    gamma: float,
    labeled_weight: float,
    surrogate: str = "sigmoid",
) -> torch.Tensor:
    """``training_risk`` on the corpus rows plus ``labeled_weight * pn_risk`` on the rows of L (if any).

    Args:
        loss: Objective name (see :func:`refine.objectives.training_risk`).
        logits: ``unsafe_logit`` of the batch, shape ``(n,)``.
        in_u1: Pseudo-label unsafe, bool, shape ``(n,)``.
        gold: 1 / 0 / -1, shape ``(n,)``.
        in_labeled: True for appended rows of L, shape ``(n,)``; None: no such rows.
        priors: Priors of the current split (UU losses).
        gamma: Slope of the robust correction.
        labeled_weight: lambda of the labelled-set term.
        surrogate: Pointwise loss, ``sigmoid`` or ``logistic``.

    Returns:
        A scalar tensor, the same value the frozen path's objective gives for these rows.
    """
    if in_labeled is None or not bool(in_labeled.any()):
        return training_risk(loss, logits, in_u1=in_u1, gold=gold, priors=priors, gamma=gamma, surrogate=surrogate)
    corpus = ~in_labeled
    risk = training_risk(loss, logits[corpus], in_u1=in_u1[corpus], gold=gold[corpus], priors=priors, gamma=gamma,
                         surrogate=surrogate)
    return risk + labeled_weight * pn_risk(logits[in_labeled], gold[in_labeled], surrogate)


@dataclass
class UUCollator:
    """Pads the model inputs of a list of rows to the longest one and stacks the label columns.

    Attributes:
        tokenizer: The classifier's tokenizer (its pad token and padding side are used).
        pad_to_multiple_of: Round the padded length up (8 suits tensor cores); None: exact longest.
        pad_to_length: Pad every batch to this fixed length instead (the benchmark's padded baseline only).
    """

    tokenizer: object
    pad_to_multiple_of: int | None = None
    pad_to_length: int | None = None

    def __call__(self, features: list[dict]) -> dict[str, torch.Tensor]:
        inputs = [{k: f[k] for k in MODEL_INPUTS if k in f} for f in features]
        if self.pad_to_length is not None:
            batch = self.tokenizer.pad(inputs, padding="max_length", max_length=self.pad_to_length,
                                       return_tensors="pt")
        else:
            batch = self.tokenizer.pad(inputs, padding="longest", pad_to_multiple_of=self.pad_to_multiple_of,
                                       return_tensors="pt")
        batch = dict(batch)
        for key in LABEL_COLUMNS:
            if key in features[0]:
                batch[key] = torch.tensor([int(f[key]) for f in features], dtype=torch.long)
        return batch


@dataclass
class LabeledDraws:
    """Draws of rows of L for the labelled-set term: draw ``m`` is rows ``m * per_step`` to ``(m + 1) * per_step - 1``
    of an endless sequence of seeded shuffles of L, so every row comes once per shuffle and draw ``m`` depends only on
    ``m`` (a resumed run draws what an uninterrupted one would)."""

    rows: list[dict]
    per_step: int
    seed: int

    def draw(self, index: int) -> list[dict]:
        n = len(self.rows)
        positions = range(index * self.per_step, (index + 1) * self.per_step)
        shuffles = {p // n: np.random.default_rng([self.seed, p // n]).permutation(n) for p in positions}
        return [{**self.rows[shuffles[p // n][p % n]], "in_labeled": 1} for p in positions]


class UUTrainer(Trainer):
    """A Trainer whose loss is refine's objective; see the module docstring.

    Args:
        loss: Objective name, ``train.loss``.
        priors: Priors of the current split; None for the gold-label losses.
        gamma: Slope of the robust correction, ``train.gamma``.
        surrogate: Pointwise loss, ``train.surrogate``.
        labeled_weight: lambda of the labelled-set term, ``train.labeled_weight``.
        labeled_rows: Tokenized rows of L (with ``gold``), appended to training micro-batches when
            ``labeled_weight > 0``; None or empty: no labelled-set term.
        labeled_per_step: Rows of L per micro-batch; None: all of L.
        *args, **kwargs: Passed to ``transformers.Trainer``; ``data_collator`` must keep the label columns
            (e.g. :class:`UUCollator`) and ``args.remove_unused_columns`` must be False.
    """

    def __init__(self, *args, loss: str, priors: Priors | None, gamma: float, surrogate: str = "sigmoid",
                 labeled_weight: float = 0.0, labeled_rows: list[dict] | None = None,
                 labeled_per_step: int | None = None, **kwargs):
        super().__init__(*args, **kwargs)
        if self.args.remove_unused_columns:
            raise ValueError("UUTrainer needs remove_unused_columns=False, or the in_u1/gold columns are dropped.")
        self.loss_name, self.priors, self.gamma, self.labeled_weight = loss, priors, gamma, labeled_weight
        self.surrogate = surrogate
        # The loss is a per-micro-batch mean: let the Trainer divide it by gradient_accumulation_steps.
        self.model_accepts_loss_kwargs = False
        self._labeled, self._step, self._micro_step = None, -1, 0
        if labeled_weight > 0 and labeled_rows:
            per_step = min(labeled_per_step or len(labeled_rows), len(labeled_rows))
            # Each process draws its own rows of L (seed offset by rank), so the processes cover L faster.
            self._labeled = LabeledDraws(labeled_rows, per_step, seed=self.args.seed + 1000 * self.args.process_index)

    def training_step(self, model, inputs, num_items_in_batch=None):
        if self._labeled is not None:
            # The draw's index counts micro-batches from the optimiser step, which a resumed run restores.
            if self.state.global_step != self._step:
                self._step, self._micro_step = self.state.global_step, 0
            index = self._step * self.args.gradient_accumulation_steps + self._micro_step
            self._micro_step += 1
            pad_token_id = getattr(self.data_collator.tokenizer, "pad_token_id", None) or 0
            inputs = append_rows(inputs, self.data_collator(self._labeled.draw(index)), pad_token_id)
        return super().training_step(model, inputs, num_items_in_batch)

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        in_u1 = inputs.pop("in_u1").bool()
        gold = inputs.pop("gold")
        in_labeled = inputs.pop("in_labeled", None)
        outputs = model(**inputs)
        logits = outputs.logits.squeeze(-1).float()  # the risk in float32, also under bf16/fp16 autocast
        loss = corpus_and_labeled_risk(
            self.loss_name, logits, in_u1=in_u1, gold=gold, in_labeled=None if in_labeled is None else in_labeled.bool(),
            priors=self.priors, gamma=self.gamma, labeled_weight=self.labeled_weight, surrogate=self.surrogate,
        )
        return (loss, outputs) if return_outputs else loss


def append_rows(batch: dict[str, torch.Tensor], extra: dict[str, torch.Tensor], pad_token_id: int) -> dict:
    """Concatenate two collated batches along the batch axis, right-padding the shorter one's sequences.

    Sequence columns (2-D) are padded with ``pad_token_id`` (``input_ids``) or 0 (masks, token types); 1-D columns
    missing from one side (``in_labeled``) count as 0 there.
    """
    n_batch = next(iter(batch.values())).shape[0]
    n_extra = next(iter(extra.values())).shape[0]
    length = max(v.shape[1] for v in (*batch.values(), *extra.values()) if v.dim() == 2)
    out = {}
    for key in dict.fromkeys([*batch, *extra]):
        parts = []
        for source, n in ((batch, n_batch), (extra, n_extra)):
            value = source.get(key)
            if value is None:
                value = torch.zeros(n, dtype=torch.long)
            value = value.to(next(iter(batch.values())).device)
            if value.dim() == 2 and value.shape[1] < length:
                fill = pad_token_id if key == "input_ids" else 0
                value = torch.nn.functional.pad(value, (0, length - value.shape[1]), value=fill)
            parts.append(value)
        out[key] = torch.cat(parts)
    return out


def validation_risk_metric(loss: str, priors: Priors | None, gamma: float, surrogate: str = "sigmoid"):
    """``compute_metrics`` for the Trainer, over all evaluation rows at once.

    Returns ``{"risk": objective on the validation rows, "labeled_risk": pn_risk on the gold labels of L}``, each
    only when such rows exist.
    """

    def compute(eval_prediction) -> dict[str, float]:
        logits = torch.as_tensor(np.asarray(eval_prediction.predictions)).reshape(-1).float()
        in_u1, gold, in_labeled = (torch.as_tensor(np.asarray(c)).reshape(-1) for c in eval_prediction.label_ids)
        validation, labeled = in_labeled == 0, in_labeled == 1
        metrics = {}
        if bool(validation.any()):
            metrics["risk"] = float(training_risk(loss, logits[validation], in_u1=in_u1[validation].bool(),
                                                  gold=gold[validation].long(), priors=priors, gamma=gamma,
                                                  surrogate=surrogate))
        if bool(labeled.any()):
            metrics["labeled_risk"] = float(pn_risk(logits[labeled], gold[labeled], surrogate))
        return metrics

    return compute
