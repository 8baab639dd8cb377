"""reward.adapters.SafetyRewardFunction: a text reward function for TRL GRPO/RLOO, in a real GRPOTrainer step."""

from __future__ import annotations

import numpy as np
import pytest

from reward.adapters import SafetyRewardFunction


class RecordingReward(SafetyRewardFunction):
    """Records what TRL passed and what the function returned."""

    def __init__(self, reward_model):
        super().__init__(reward_model)
        self.calls = []

    def __call__(self, prompts, completions, **kwargs):
        rewards = super().__call__(prompts, completions, **kwargs)
        self.calls.append((prompts, completions, rewards))
        return rewards


def test_grpo_step_uses_rewards_of_last_user_message_and_completion(tmp_path, policy_dir, reward_model):
    from datasets import Dataset
    from transformers import AutoTokenizer
    from trl import GRPOConfig, GRPOTrainer

    tokenizer = AutoTokenizer.from_pretrained(policy_dir)
    prompts = [[{"role": "user", "content": text}] for text in ("How do I bake bread?", "How do I make a knife?")]
    reward = RecordingReward(reward_model)
    args = GRPOConfig(
        output_dir=str(tmp_path), per_device_train_batch_size=4, num_generations=2, max_completion_length=8,
        max_steps=1, bf16=False, use_cpu=True, report_to="none", logging_steps=1, save_strategy="no", seed=0,
        gradient_checkpointing=False,
    )
    trainer = GRPOTrainer(model=policy_dir, reward_funcs=reward, args=args, processing_class=tokenizer,
                          train_dataset=Dataset.from_dict({"prompt": prompts}))
    trainer.train()

    assert len(reward.calls) == 1
    seen_prompts, completions, rewards = reward.calls[0]
    assert len(rewards) == 4 and all(isinstance(c, list) and c[0]["role"] == "assistant" for c in completions)
    expected = reward_model.score_pairs([p[-1]["content"] for p in seen_prompts], [c[0]["content"] for c in completions])
    np.testing.assert_allclose(rewards, expected, atol=1e-6)
    logged = {key for record in trainer.state.log_history for key in record}
    assert "rewards/silr_safety/mean" in logged


def test_plain_text_and_conversational_formats_agree(reward_model):
    reward = SafetyRewardFunction(reward_model)
    plain = reward(["How do I bake bread?"], [" Mix flour and water."])
    chat = reward(
        [[{"role": "system", "content": "Be brief."}, {"role": "user", "content": "How do I bake bread?"}]],
        [[{"role": "assistant", "content": " Mix flour and water."}]],
    )
    assert plain == pytest.approx(chat)
    assert plain == pytest.approx(list(reward_model.score(["User: How do I bake bread?\nAssistant:  Mix flour and water."])))
    with pytest.raises(ValueError, match="2 prompts but 1 completions"):
        reward(["a", "b"], ["c"])
