"""The trainable head of a Hugging Face sequence classifier, split off so the encoder can stay frozen.

The frozen path caches, for every text, the tensor that the model's own head reads ("head input"), and trains a copy
of that head. The head's parameters keep the names they have in the full model, so putting them back gives a
standard ``AutoModelForSequenceClassification`` whose scores equal the ones seen in training (``reward.export``).

Families:

- ``bert``: head input is the [CLS] hidden state; head = ``bert.pooler.dense`` → tanh → dropout → ``classifier``
  (the pooler is trainable, which makes the head a one-hidden-layer MLP initialised from the pretrained pooler).
- ``score``: decoder classifiers (Llama, Qwen2, Mistral, ...); head input is the hidden state of the last non-pad
  token, chosen exactly as ``LlamaForSequenceClassification`` chooses it; head = ``score`` (linear, no bias).
"""

from __future__ import annotations

import copy

import torch
from torch import nn


class ClassifierHead(nn.Module):
    """Maps head inputs of shape ``(n, hidden)`` to ``unsafe_logit`` of shape ``(n,)``."""

    family: str = ""
    # Submodule name in this head → its name in the full model, e.g. {"dense": "bert.pooler.dense"}.
    model_names: dict[str, str] = {}

    def model_state_dict(self) -> dict[str, torch.Tensor]:
        """The head's parameters under their names in the full model (contiguous copies, for safetensors)."""
        state = {}
        for key, value in self.state_dict().items():
            module, _, param = key.partition(".")
            state[f"{self.model_names[module]}.{param}"] = value.detach().clone().contiguous()
        return state


class BertHead(ClassifierHead):
    family = "bert"
    model_names = {"dense": "bert.pooler.dense", "classifier": "classifier"}

    def __init__(self, model: nn.Module):
        super().__init__()
        config = model.config
        self.dense = copy.deepcopy(model.bert.pooler.dense)
        dropout = config.classifier_dropout if config.classifier_dropout is not None else config.hidden_dropout_prob
        self.dropout = nn.Dropout(dropout)
        self.classifier = copy.deepcopy(model.classifier)

    def forward(self, head_input: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.dropout(torch.tanh(self.dense(head_input)))).squeeze(-1)


class ScoreHead(ClassifierHead):
    family = "score"
    model_names = {"score": "score"}

    def __init__(self, model: nn.Module):
        super().__init__()
        self.score = copy.deepcopy(model.score)

    def forward(self, head_input: torch.Tensor) -> torch.Tensor:
        return self.score(head_input).squeeze(-1)


def head_family(model: nn.Module) -> str:
    """``bert`` or ``score``; raises ValueError naming the model type otherwise."""
    if getattr(model, "bert", None) is not None and getattr(model.bert, "pooler", None) is not None:
        return "bert"
    if isinstance(getattr(model, "score", None), nn.Linear):
        return "score"
    raise ValueError(
        f"the frozen classifier supports BERT-style encoders and decoder classifiers with a `score` head; "
        f"{type(model).__name__} (model_type={model.config.model_type}) is neither. Use a supported base model."
    )


def new_head(model: nn.Module, *, seed: int) -> ClassifierHead:
    """A fresh head for ``model``: pretrained pooler (bert), output layer re-initialised from ``seed``."""
    family = head_family(model)
    head = BertHead(model) if family == "bert" else ScoreHead(model)
    generator = torch.Generator().manual_seed(seed)
    output = head.classifier if family == "bert" else head.score
    with torch.no_grad():
        output.weight.normal_(0.0, model.config.initializer_range, generator=generator)
        if output.bias is not None:
            output.bias.zero_()
    return head


def last_non_pad_index(input_ids: torch.Tensor, pad_token_id: int | None) -> torch.Tensor:
    """Index of the last non-pad token of each row, as ``LlamaForSequenceClassification`` computes it."""
    if pad_token_id is None:
        return torch.full((input_ids.shape[0],), input_ids.shape[1] - 1, dtype=torch.long)
    non_pad = (input_ids != pad_token_id).to(torch.long)
    positions = torch.arange(input_ids.shape[-1], dtype=torch.long)
    return (positions * non_pad).argmax(-1)


def backbone_outputs(model: nn.Module, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """Run the frozen backbone on a tokenized batch.

    Returns:
        ``(head_input, mean_pooled)``, each of shape ``(batch, hidden)``: what the model's head reads, and the
        attention-masked mean of the last hidden states (a sentence embedding).
    """
    family = head_family(model)
    backbone = getattr(model, model.base_model_prefix)
    inputs = {k: v for k, v in batch.items() if k in ("input_ids", "attention_mask", "token_type_ids")}
    hidden = backbone(**inputs).last_hidden_state
    mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)
    mean_pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1.0)
    if family == "bert":
        head_input = hidden[:, 0]
    else:
        index = last_non_pad_index(batch["input_ids"], model.config.pad_token_id)
        head_input = hidden[torch.arange(hidden.shape[0]), index]
    return head_input, mean_pooled
