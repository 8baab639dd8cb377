"""reward.chat_text: recovering (prompt, response) from SmolLM2 (ChatML) sequences."""

from __future__ import annotations

import pytest

from reward.chat_text import ChatTextExtractor, chat_markup

TEMPLATE = "User: {prompt}\nAssistant: {response}"


@pytest.fixture(scope="module")
def extractor(smollm2_tokenizer):
    return ChatTextExtractor(smollm2_tokenizer, TEMPLATE)


def test_markup_learned_from_the_chat_template(smollm2_tokenizer):
    markup = chat_markup(smollm2_tokenizer)
    assert markup.generation_marker == "<|im_end|>\n<|im_start|>assistant\n"
    assert markup.user_header == "<|im_start|>user\n"
    assert markup.turn_end == "<|im_end|>"


def test_single_turn_with_default_system_prompt(smollm2_tokenizer, extractor):
    query = smollm2_tokenizer.apply_chat_template([{"role": "user", "content": "How do I bake bread?"}],
                                                  tokenize=False, add_generation_prompt=True)
    decoded = query + "Knead the dough.<|im_end|><|endoftext|>"
    assert extractor.split(decoded) == ("How do I bake bread?", "Knead the dough.")
    assert extractor.to_text(decoded) == "User: How do I bake bread?\nAssistant: Knead the dough."


def test_multi_turn_keeps_the_last_user_message(smollm2_tokenizer, extractor):
    messages = [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello!"},
                {"role": "user", "content": "Line one\nline two"}]
    query = smollm2_tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    assert extractor.split(query + " Sure") == ("Line one\nline two", "Sure")


def test_empty_response_and_sequences_without_markup(extractor):
    assert extractor.split("<|im_start|>user\nQ<|im_end|>\n<|im_start|>assistant\n<|im_end|>") == ("Q", "")
    assert extractor.split("just some text") is None
    assert extractor.to_text("<|im_start|>just some text<|im_end|>") == "just some text"


def test_tokenizer_without_chat_template(minilm_tokenizer):
    extractor = ChatTextExtractor(minilm_tokenizer, TEMPLATE)
    assert extractor.markup is None
    assert extractor.to_text("[CLS] hello world [SEP]") == "hello world"
