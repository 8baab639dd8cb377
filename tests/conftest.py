"""Shared fixtures: tiny random models built from a config with the real packaged tokenizers (offline, seconds)."""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import pytest
import torch

from refine.packaged_models import locate_model


@pytest.fixture(scope="session")
def minilm_tokenizer():
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(locate_model("minilm").path)


@pytest.fixture(scope="session")
def smollm2_tokenizer(tmp_path_factory):
    """The real SmolLM2 tokenizer (read from the packaged GGUF once, saved as a plain tokenizer folder)."""
    from transformers import AutoTokenizer

    location = locate_model("smollm2")
    tokenizer = AutoTokenizer.from_pretrained(location.path, gguf_file=location.gguf_file)
    folder = tmp_path_factory.mktemp("smollm2_tokenizer")
    tokenizer.save_pretrained(folder)
    return AutoTokenizer.from_pretrained(folder)


@pytest.fixture(scope="session")
def tiny_bert_dir(tmp_path_factory, minilm_tokenizer):
    """A 2-layer, hidden-32 BERT with the real MiniLM tokenizer, saved as safetensors."""
    from transformers import BertConfig, BertModel

    torch.manual_seed(0)
    config = BertConfig(
        vocab_size=minilm_tokenizer.vocab_size, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
        intermediate_size=64, max_position_embeddings=512,
    )
    folder = tmp_path_factory.mktemp("tiny_bert")
    BertModel(config).save_pretrained(folder)
    minilm_tokenizer.save_pretrained(folder)
    return str(folder)


@pytest.fixture(scope="session")
def tiny_llama_dir(tmp_path_factory, smollm2_tokenizer):
    """A 2-layer, hidden-32 Llama causal LM with the real SmolLM2 tokenizer and chat template."""
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=len(smollm2_tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
        num_attention_heads=2, num_key_value_heads=1, max_position_embeddings=1024,
        pad_token_id=smollm2_tokenizer.pad_token_id, eos_token_id=smollm2_tokenizer.eos_token_id,
        bos_token_id=smollm2_tokenizer.bos_token_id, tie_word_embeddings=True,
    )
    folder = tmp_path_factory.mktemp("tiny_llama")
    LlamaForCausalLM(config).save_pretrained(folder)
    smollm2_tokenizer.save_pretrained(folder)
    return str(folder)


def _reward_test_helpers():
    """tests/reward/conftest.py loaded as a plain module, for its ``build_tiny_run`` (a tiny refine run on disk)."""
    import importlib.util
    import sys
    from pathlib import Path

    name = "silr_tests_reward_helpers"
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, Path(__file__).parent / "reward" / "conftest.py")
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module  # its dataclasses look their module up by name
        spec.loader.exec_module(module)
    return sys.modules[name]


@pytest.fixture(scope="session")
def tiny_reward_dirs(tmp_path_factory, tiny_bert_dir):
    """Two reward models exported from one tiny refine run (iterations 1 and 2, tiny BERT + real MiniLM tokenizer).

    Returns ``{"iter1": path, "iter2": path}``; tests must not modify them.
    """
    from reward.export import export_reward_model

    root = tmp_path_factory.mktemp("align_rewards")
    _reward_test_helpers().build_tiny_run(root / "run", tiny_bert_dir, n_texts=120)
    return {f"iter{k}": str(export_reward_model(root / "run", root / f"reward_iter{k}", iteration=k)) for k in (1, 2)}
