"""Reward adapters for TRL: PPO (policy token ids → reward) and a text reward function for GRPO/RLOO.

**PPO** (``trl.experimental.ppo.PPOTrainer``, trl 1.12.0). ``trl/experimental/utils.py::get_reward`` is called with
the reward model and the *policy's* token ids (query + response, pad positions replaced by 0)::

    backbone = getattr(model, model.base_model_prefix)
    output = backbone(input_ids=..., attention_mask=ids != pad, position_ids=..., return_dict=True,
                      output_hidden_states=True, use_cache=False)
    reward_logits = model.score(output.hidden_states[-1])      # (B, L, 1)
    score = reward_logits[arange(B), last_non_pad_index]        # read at the last response token

A classifier with another vocabulary would read those ids as garbage. :class:`PolicyTokenRewardModel` exposes a
``backbone`` that decodes each row (non-pad tokens only, chosen with the attention mask) with the policy tokenizer,
rebuilds the reward text (:class:`reward.chat_text.ChatTextExtractor`), scores it with the :class:`RewardModel`, and
returns a hidden-state tensor of shape ``(B, L, 1)`` filled with each row's reward; ``score`` is the identity, so the
value PPO reads at any position is the reward. When the policy and classifier tokenizers share one vocabulary (same
token → id map), the ids are passed to the classifier directly (pads removed), with no decoding: the classifier then
reads the policy's own formatting (chat markup included) rather than the reward template.

**GRPO/RLOO** (``reward_funcs=``): :class:`SafetyRewardFunction` is called as ``f(prompts, completions, **kwargs)``
with plain strings or conversations (lists of ``{"role", "content"}`` messages) and returns one float per completion.
For a conversation, the prompt is the last user message and the response the completion's assistant text.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from reward.chat_text import ChatTextExtractor
from reward.model import RewardModel

logger = logging.getLogger(__name__)


def same_vocabulary(tokenizer_a, tokenizer_b) -> bool:
    """Whether two tokenizers map the same tokens to the same ids (so ids can be shared without decoding)."""
    return tokenizer_a is tokenizer_b or tokenizer_a.get_vocab() == tokenizer_b.get_vocab()


def check_policy_tokenizer(tokenizer) -> None:
    """Raise ValueError if PPO cannot use ``tokenizer``: it has no pad token."""
    if tokenizer.pad_token_id is None:
        raise ValueError(
            "the policy tokenizer has no pad token, and PPO marks padding with it; add one distinct from EOS: "
            "tokenizer.add_special_tokens({'pad_token': '<|pad|>'}) and model.resize_token_embeddings(len(tokenizer))."
        )
    if tokenizer.pad_token_id == tokenizer.eos_token_id:
        logger.warning("the policy's pad token equals its EOS token (%r): PPO will treat every EOS as padding; add a "
                       "distinct pad token", tokenizer.pad_token)


class PolicyIdsToReward(nn.Module):
    """The ``backbone`` PPO calls: policy ids → a ``(B, L, 1)`` "hidden state" filled with each row's reward."""

    def __init__(self, reward_model: RewardModel, policy_tokenizer, *, reuse_token_ids: bool):
        super().__init__()
        self.reward_model = reward_model
        self.classifier = reward_model.model  # registered, so .to(device) and disable_dropout reach it
        self.policy_tokenizer = policy_tokenizer
        self.reuse_token_ids = reuse_token_ids
        self.extractor = None if reuse_token_ids else ChatTextExtractor(policy_tokenizer, reward_model.metadata.template)

    def train(self, mode: bool = True):
        super().train(mode)
        self.classifier.eval()  # the reward model is never trained, and dropout would make rewards random
        return self

    def texts_from_token_ids(self, sequences: Sequence[Sequence[int]]) -> list[str]:
        """Reward texts of policy sequences (pad tokens already removed)."""
        decoded = self.policy_tokenizer.batch_decode([list(ids) for ids in sequences], skip_special_tokens=False)
        return [self.extractor.to_text(text) for text in decoded]

    def rewards_from_token_ids(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None) -> torch.Tensor:
        """Reward of each row of ``input_ids`` (B, L), counting only positions where ``attention_mask`` is set."""
        if attention_mask is None:
            attention_mask = input_ids != self.policy_tokenizer.pad_token_id
        keep = attention_mask.bool().cpu()
        rows = [ids[mask].tolist() for ids, mask in zip(input_ids.cpu(), keep, strict=True)]
        if self.reuse_token_ids:
            rewards = self.reward_model.score_token_ids(rows)
        else:
            rewards = self.reward_model.score(self.texts_from_token_ids(rows))
        return torch.as_tensor(rewards, dtype=torch.float32, device=input_ids.device)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None, **unused: Any):
        from transformers.modeling_outputs import BaseModelOutput

        # position_ids, use_cache, return_dict, output_hidden_states: meaningless here, the classifier builds its own.
        rewards = self.rewards_from_token_ids(input_ids, attention_mask)
        hidden = rewards.view(-1, 1, 1).expand(input_ids.shape[0], input_ids.shape[1], 1)
        return BaseModelOutput(last_hidden_state=hidden, hidden_states=(hidden,))


class PolicyTokenRewardModel(nn.Module):
    """A reward model PPO can call with the policy's token ids (see the module docstring).

    Args:
        reward_model: The :class:`RewardModel` (its ``normalize`` setting applies to the rewards PPO sees).
        policy_tokenizer: The policy's tokenizer; it must have a pad token.
        reuse_token_ids: None: pass ids straight to the classifier iff both tokenizers share one vocabulary.
            False: always decode and retokenize. True: never decode (an error if the vocabularies differ).

    Raises:
        ValueError: If the policy tokenizer has no pad token, or ``reuse_token_ids=True`` with different vocabularies.

    Example::

        reward = PolicyTokenRewardModel(RewardModel.from_pretrained("runs/demo/reward"), policy_tokenizer)
        PPOTrainer(args, processing_class=policy_tokenizer, model=policy, ref_model=None, reward_model=reward,
                   value_model=value, train_dataset=dataset)
    """

    base_model_prefix = "backbone"

    def __init__(self, reward_model: RewardModel, policy_tokenizer, *, reuse_token_ids: bool | None = None):
        super().__init__()
        check_policy_tokenizer(policy_tokenizer)
        shared = same_vocabulary(policy_tokenizer, reward_model.tokenizer)
        if reuse_token_ids and not shared:
            raise ValueError("reuse_token_ids=True, but the policy and reward tokenizers have different vocabularies; "
                             "leave reuse_token_ids=None to decode and retokenize.")
        self.backbone = PolicyIdsToReward(
            reward_model, policy_tokenizer, reuse_token_ids=shared if reuse_token_ids is None else reuse_token_ids
        )
        self.score = nn.Identity()
        # trl.models.utils.prepare_deepspeed reads model.config.hidden_size(s) under DeepSpeed ZeRO-3.
        self.config = reward_model.model.config

    @property
    def reuses_token_ids(self) -> bool:
        return self.backbone.reuse_token_ids

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None, **unused: Any) -> torch.Tensor:
        """Rewards of shape ``(B,)`` for policy ids ``(B, L)``."""
        return self.backbone.rewards_from_token_ids(input_ids, attention_mask)


def _content_text(content: Any) -> str:
    """Message content as text: a string, or the text parts of a multimodal content list."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(part.get("text", "") for part in content if isinstance(part, dict))
    return "" if content is None else str(content)


def prompt_text(prompt: str | list[dict]) -> str:
    """A plain prompt, or the last user message of a conversation."""
    if isinstance(prompt, str):
        return prompt
    users = [m for m in prompt if m.get("role") == "user"]
    if not users:
        raise ValueError(f"conversational prompt has no user message (roles: {[m.get('role') for m in prompt]}).")
    return _content_text(users[-1].get("content"))


def completion_text(completion: str | list[dict]) -> str:
    """A plain completion, or the assistant text of a conversational completion."""
    if isinstance(completion, str):
        return completion
    return "".join(_content_text(m.get("content")) for m in completion if m.get("role", "assistant") == "assistant")


class SafetyRewardFunction:
    """A TRL GRPO/RLOO reward function: ``(prompts, completions, **kwargs) -> list[float]`` (higher means safer).

    Args:
        reward_model: The :class:`RewardModel`; its template joins prompt and completion.
        name: Shown in TRL's logs as ``rewards/<name>/mean``.

    Example::

        GRPOTrainer(model=policy, reward_funcs=SafetyRewardFunction(RewardModel.from_pretrained(path)), ...)
    """

    def __init__(self, reward_model: RewardModel, *, name: str = "silr_safety"):
        self.reward_model = reward_model
        self.__name__ = name

    def __call__(self, prompts: Sequence[Any], completions: Sequence[Any], **kwargs: Any) -> list[float]:
        if len(prompts) != len(completions):
            raise ValueError(f"{len(prompts)} prompts but {len(completions)} completions; pass one per prompt.")
        prompt_texts = [prompt_text(p) for p in prompts]
        responses = [completion_text(c) for c in completions]
        return [float(r) for r in self.reward_model.score_pairs(prompt_texts, responses)]
