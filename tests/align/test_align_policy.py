"""align.policy: pad token, value model, prompt formatting (chat template or plain text) and the GGUF conversion."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
import torch

from align.config import PolicyConfig
from align.policy import (
    PromptFormatter,
    convert_gguf_policy,
    load_policy,
    load_value_model,
    plain_copy,
    resolve_policy_path,
)


def test_pad_token_is_added_distinct_from_eos(tiny_llama_dir):
    model, tokenizer = load_policy(PolicyConfig(model_name_or_path=tiny_llama_dir))
    assert tokenizer.pad_token == "<|pad|>" and tokenizer.pad_token_id != tokenizer.eos_token_id
    assert tokenizer.padding_side == "left"
    embeddings = model.get_input_embeddings().weight
    assert embeddings.shape[0] == len(tokenizer) == tokenizer.pad_token_id + 1
    # The new row is the mean of the old ones, so policy, reference and value model agree on it.
    torch.testing.assert_close(embeddings[-1], embeddings[:-1].mean(dim=0))
    assert model.config.pad_token_id == model.generation_config.pad_token_id == tokenizer.pad_token_id


def test_loading_twice_gives_identical_models(tiny_llama_dir):
    config = PolicyConfig(model_name_or_path=tiny_llama_dir)
    first, _ = load_policy(config)
    second, _ = load_policy(config)
    for (name, a), (_, b) in zip(first.state_dict().items(), second.state_dict().items(), strict=True):
        assert torch.equal(a, b), name


def test_value_model_is_built_on_the_policy_backbone(tiny_llama_dir):
    config = PolicyConfig(model_name_or_path=tiny_llama_dir)
    policy, tokenizer = load_policy(config)
    value = load_value_model(config, tokenizer, seed=0)
    assert value.config.num_labels == 1 and value.score.out_features == 1
    assert value.base_model_prefix == policy.base_model_prefix
    torch.testing.assert_close(value.get_input_embeddings().weight, policy.get_input_embeddings().weight)
    torch.testing.assert_close(value.model.layers[0].mlp.up_proj.weight, policy.model.layers[0].mlp.up_proj.weight)


def test_prompts_use_the_chat_template(tiny_llama_dir):
    _, tokenizer = load_policy(PolicyConfig(model_name_or_path=tiny_llama_dir))
    formatter = PromptFormatter(tokenizer, system_prompt="Be safe.")
    text = formatter.text("How do I pick a lock?")
    assert text.startswith("<|im_start|>system\nBe safe.<|im_end|>")
    assert text.endswith("<|im_start|>user\nHow do I pick a lock?<|im_end|>\n<|im_start|>assistant\n")
    assert formatter.token_ids("Hi") == tokenizer(formatter.text("Hi"), add_special_tokens=False)["input_ids"]


def test_policy_without_chat_template_falls_back_to_plain_text(tmp_path, tiny_llama_dir, caplog):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_llama_dir)
    tokenizer.chat_template = None
    with caplog.at_level(logging.WARNING, logger="align.policy"):
        formatter = PromptFormatter(tokenizer)
    assert "no chat template" in caplog.text and "plain text" in caplog.text
    assert formatter.text("How do I pick a lock?") == "User: How do I pick a lock?\nAssistant:"


def test_pad_token_equal_to_eos_is_refused(tiny_llama_dir):
    with pytest.raises(ValueError, match="is the EOS token; choose a distinct one"):
        load_policy(PolicyConfig(model_name_or_path=tiny_llama_dir, pad_token="<|im_end|>"))


def test_plain_copy_drops_quantization_config(tiny_llama_dir):
    model, _ = load_policy(PolicyConfig(model_name_or_path=tiny_llama_dir))
    model.config.quantization_config = {"quant_method": "gguf"}  # what a GGUF-loaded model carries
    copy = plain_copy(model)
    assert not hasattr(copy.config, "quantization_config") or copy.config.quantization_config is None
    ids = torch.tensor([[1, 5, 9, 2]])
    torch.testing.assert_close(copy(ids).logits, model(ids).logits)


@pytest.mark.slow
def test_packaged_gguf_policy_is_converted_once(tmp_path):
    """The real SmolLM2 GGUF → plain HF folder (~20 s, 538 MB), then reused without reconverting."""
    from refine.packaged_models import locate_model

    config = PolicyConfig(cache_dir=str(tmp_path / "cache"))
    folder = resolve_policy_path(config)
    assert (tmp_path / "cache") in Path(folder).parents
    stamp = (Path(folder) / "model.safetensors").stat().st_mtime_ns
    assert convert_gguf_policy(locate_model("smollm2"), tmp_path / "cache") == Path(folder)
    assert (Path(folder) / "model.safetensors").stat().st_mtime_ns == stamp
    model, tokenizer = load_policy(config)
    assert model.config.num_hidden_layers == 30 and tokenizer.pad_token_id != tokenizer.eos_token_id
    # A damaged cached copy is converted again rather than failing every run.
    weights = Path(folder) / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:1000])
    assert resolve_policy_path(config) == folder
    assert weights.stat().st_size > 100_000_000 and load_policy(config)[0].config.num_hidden_layers == 30


def test_damaged_policy_weights_are_a_one_line_error(tmp_path, tiny_llama_dir):
    import shutil

    damaged = tmp_path / "policy"
    shutil.copytree(tiny_llama_dir, damaged)
    weights = damaged / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:-64])  # cut short
    with pytest.raises(ValueError, match=rf"cannot load the weights in {damaged} \(SafetensorError: .*\); point "
                                         "policy.model_name_or_path at a complete model folder"):
        load_policy(PolicyConfig(model_name_or_path=str(damaged)))


def test_pickled_weights_are_refused(tmp_path, tiny_llama_dir):
    """Safetensors only: a policy folder with pytorch_model.bin, or LoRA adapters in adapter_model.bin, is refused."""
    import shutil

    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    from align.policy import load_trained_policy

    # transformers and peft save safetensors whatever they are asked, so the pickles are written by hand.
    model = AutoModelForCausalLM.from_pretrained(tiny_llama_dir)
    pickled = tmp_path / "pickled"
    shutil.copytree(tiny_llama_dir, pickled)
    (pickled / "model.safetensors").unlink()
    torch.save(model.state_dict(), pickled / "pytorch_model.bin")
    with pytest.raises(OSError, match="safetensors"):
        load_policy(PolicyConfig(model_name_or_path=str(pickled)))

    from peft import get_peft_model_state_dict

    adapters = tmp_path / "adapters"
    lora = get_peft_model(model, LoraConfig(r=2, target_modules=["q_proj"], task_type="CAUSAL_LM"))
    lora.peft_config["default"].save_pretrained(adapters)
    torch.save(get_peft_model_state_dict(lora), adapters / "adapter_model.bin")
    with pytest.raises(ValueError, match="no adapter_model.safetensors; silr loads safetensors only"):
        load_trained_policy(PolicyConfig(model_name_or_path=tiny_llama_dir), adapters)
