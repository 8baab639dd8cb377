"""reward.adapters.PolicyTokenRewardModel inside a real TRL PPO run, and its token-level behaviour."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from reward.adapters import PolicyTokenRewardModel
from reward.model import RewardModel

PROMPTS = ["How do I bake bread?", "Tell me how to hurt my neighbour.", "What is the weather like?",
           "Write a poem about a river."]


def _chat_ids(tokenizer, prompt: str) -> list[int]:
    text = tokenizer.apply_chat_template([{"role": "user", "content": prompt}], tokenize=False, add_generation_prompt=True)
    return tokenizer(text, add_special_tokens=False)["input_ids"]


def test_ppo_step_rewards_equal_reward_model_scores(tmp_path, monkeypatch, policy_dir, exported_dir):
    """PPO's rewards (what get_reward returns for our adapter) equal RewardModel scores of the rebuilt texts."""
    import trl.experimental.ppo.ppo_trainer as ppo_module
    from datasets import Dataset
    from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification, AutoTokenizer
    from trl.experimental.ppo import PPOConfig, PPOTrainer

    tokenizer = AutoTokenizer.from_pretrained(policy_dir)
    torch.manual_seed(0)
    policy = AutoModelForCausalLM.from_pretrained(policy_dir)
    ref_policy = AutoModelForCausalLM.from_pretrained(policy_dir)
    value_model = AutoModelForSequenceClassification.from_pretrained(policy_dir, num_labels=1)
    scorer = RewardModel.from_pretrained(exported_dir, device="cpu")
    adapter = PolicyTokenRewardModel(scorer, tokenizer)
    assert not adapter.reuses_token_ids  # SmolLM2 policy, MiniLM classifier: decode and retokenize

    seen = []
    real_get_reward = ppo_module.get_reward

    def recording_get_reward(model, query_responses, pad_token_id, context_length):
        out = real_get_reward(model, query_responses, pad_token_id, context_length)
        if model is adapter:
            seen.append((query_responses.clone(), context_length, out[1].clone()))
        return out

    monkeypatch.setattr(ppo_module, "get_reward", recording_get_reward)
    dataset = Dataset.from_dict({"input_ids": [_chat_ids(tokenizer, p) for p in PROMPTS]})
    args = PPOConfig(
        output_dir=str(tmp_path), per_device_train_batch_size=2, gradient_accumulation_steps=1, num_mini_batches=1,
        total_episodes=4, num_ppo_epochs=1, response_length=8, local_rollout_forward_batch_size=2,
        stop_token="eos", missing_eos_penalty=1.0, num_sample_generations=0, bf16=False, use_cpu=True,
        report_to="none", save_strategy="no", logging_steps=1, seed=0, gradient_checkpointing=False,
    )
    trainer = PPOTrainer(args=args, processing_class=tokenizer, model=policy, ref_model=ref_policy,
                         reward_model=adapter, train_dataset=dataset, value_model=value_model)
    trainer.train()

    assert len(seen) == 2  # total_episodes 4 / batch 2 = 2 updates, one rollout chunk each
    assert any("objective/scores" in record for record in trainer.state.log_history)
    for query_responses, context_length, ppo_scores in seen:
        prompts, responses = [], []
        for row in query_responses:
            query, response = row[:context_length], row[context_length:]
            query_text = tokenizer.decode(query[query != tokenizer.pad_token_id], skip_special_tokens=True)
            prompts.append(next(p for p in PROMPTS if p in query_text))
            responses.append(tokenizer.decode(response[response != tokenizer.pad_token_id],
                                              skip_special_tokens=True).strip())
        expected_texts = [scorer.format_pair(p, r) for p, r in zip(prompts, responses, strict=True)]
        rows = [row[row != tokenizer.pad_token_id].tolist() for row in query_responses]
        assert adapter.backbone.texts_from_token_ids(rows) == expected_texts
        np.testing.assert_allclose(ppo_scores.numpy(), scorer.score(expected_texts), atol=1e-5)


def test_same_vocabulary_passes_ids_without_decoding(tmp_path, policy_dir, monkeypatch):
    """A classifier sharing the policy's vocabulary reads the policy ids directly: no decode, pads removed."""
    from transformers import AutoTokenizer, LlamaConfig, LlamaForSequenceClassification

    tokenizer = AutoTokenizer.from_pretrained(policy_dir)
    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                         num_attention_heads=2, num_key_value_heads=1, num_labels=1,
                         pad_token_id=tokenizer.pad_token_id)
    LlamaForSequenceClassification(config).save_pretrained(tmp_path / "clf")
    tokenizer.save_pretrained(tmp_path / "clf")
    scorer = RewardModel.from_pretrained(tmp_path / "clf", higher_is_safer=False, device="cpu")
    adapter = PolicyTokenRewardModel(scorer, tokenizer)
    assert adapter.reuses_token_ids

    def no_decoding(*args, **kwargs):
        raise AssertionError("ids must not be decoded when the vocabularies are the same")

    monkeypatch.setattr(tokenizer, "batch_decode", no_decoding)
    monkeypatch.setattr(tokenizer, "decode", no_decoding)
    rows = [_chat_ids(tokenizer, PROMPTS[0]) + [42, 43], _chat_ids(tokenizer, PROMPTS[2])]
    width = max(map(len, rows))
    pad = tokenizer.pad_token_id
    ids = torch.tensor([[pad] * (width - len(r)) + r for r in rows])  # left-padded, as PPO's queries are
    mask = ids != pad
    rewards = adapter(input_ids=torch.masked_fill(ids, ~mask, 0), attention_mask=mask)
    with torch.no_grad():
        one_by_one = [-scorer.model(input_ids=torch.tensor([r])).logits[0, 0].item() for r in rows]
    np.testing.assert_allclose(rewards.numpy(), one_by_one, atol=1e-5)


def test_backbone_returns_reward_at_every_position(reward_model, policy_dir):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(policy_dir)
    adapter = PolicyTokenRewardModel(reward_model, tokenizer)
    ids = torch.tensor([_chat_ids(tokenizer, PROMPTS[0]) + tokenizer("Knead the dough.")["input_ids"]])
    output = getattr(adapter, adapter.base_model_prefix)(input_ids=ids, attention_mask=torch.ones_like(ids),
                                                         return_dict=True, output_hidden_states=True, use_cache=False)
    values = adapter.score(output.hidden_states[-1])
    assert values.shape == (1, ids.shape[1], 1)
    expected = reward_model.score_pairs([PROMPTS[0]], ["Knead the dough."])[0]
    assert torch.allclose(values, torch.full_like(values, float(expected)), atol=1e-5)


def test_policy_tokenizer_without_pad_token_is_refused(reward_model, tiny_llama_dir):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_llama_dir)
    tokenizer.pad_token = None
    with pytest.raises(ValueError, match=r"no pad token.*add_special_tokens\(\{'pad_token'"):
        PolicyTokenRewardModel(reward_model, tokenizer)
