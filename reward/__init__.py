"""silr reward: a refined safety classifier as a reward model (texts → rewards).

Sign convention, stated once for the package: refine's classifier outputs ``unsafe_logit`` (positive means unsafe);
everything here works with ``reward = -unsafe_logit`` (**higher means safer**). The exported model's single logit
already *is* the reward (its output layer is negated at export), so a plain
``AutoModelForSequenceClassification`` gives rewards with no silr code. The text is decided unsafe iff
``reward < silr.threshold`` (the refine decision threshold in reward units).

Modules:

- ``config``: the ``silr`` block of an exported ``config.json`` (:class:`RewardMetadata`) and server limits.
- ``export``: a refine run → a standard Hugging Face reward-model folder with a model card.
- ``model``: :class:`RewardModel`, batched scoring of texts and prompt/response pairs.
- ``chat_text``: recover (prompt, response) from a chat-formatted policy sequence.
- ``adapters``: the TRL PPO reward adapter (policy token ids → reward) and a text reward function for GRPO/RLOO.
- ``server``: an HTTP server speaking OpenRLHF's remote reward-model protocol.
"""

from __future__ import annotations

from typing import Any

__all__ = ["PolicyTokenRewardModel", "RewardModel", "SafetyRewardFunction", "export_reward_model"]

_LAZY = {
    "RewardModel": "reward.model",
    "PolicyTokenRewardModel": "reward.adapters",
    "SafetyRewardFunction": "reward.adapters",
    "export_reward_model": "reward.export",
}


def __getattr__(name: str) -> Any:
    # Lazy so that `python -m reward --help` does not import torch and transformers.
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'reward' has no attribute {name!r}")
