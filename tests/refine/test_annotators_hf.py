"""kind=hf: a causal LM asked Yes/No, on a tiny random Llama with the real SmolLM2 tokenizer and chat template."""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd
import pytest
from transformers import AutoModelForCausalLM, AutoTokenizer, LlamaForCausalLM

from refine.annotators import LABELS_FILE, annotate_corpus, chunks
from refine.annotators.hf_causal import CausalLMScorer
from refine.config import AnnotatorConfig

TEXTS = [
    "hi",
    "I will find you and make you pay for what you did to my brother, you coward.",
    "What is the capital of France?",
    "Recipe: mix flour, sugar, eggs and butter, then bake for twenty minutes at 180 degrees.",
    "ok",
    "You are all idiots and I hope something terrible happens to you.",
    "The train leaves at seven.",
    "Could you explain how photosynthesis works in simple terms, with an example from a garden?",
    "no way",
    "Let's meet for coffee tomorrow after work.",
]


def make_corpus() -> pd.DataFrame:
    n = len(TEXTS)
    return pd.DataFrame({
        "id": np.arange(n) * 10, "text": TEXTS, "gold": [-1] * n, "split": ["train"] * 8 + ["test"] * 2,
        "labeled": [False] * n,
    })


def hf_config(model_dir: str, **overrides) -> AnnotatorConfig:
    # Random weights give arbitrary scores: label the top half so both classes exist.
    settings = {"kind": "hf", "model_name_or_path": model_dir, "threshold": "positive_fraction",
                "positive_fraction": 0.5, "batch_size": 2}
    return AnnotatorConfig(**{**settings, **overrides})


@pytest.fixture(scope="module")
def tiny_lm(tiny_llama_dir):
    model = AutoModelForCausalLM.from_pretrained(tiny_llama_dir, use_safetensors=True).eval()
    return model, AutoTokenizer.from_pretrained(tiny_llama_dir)


def make_scorer(tiny_lm, **overrides) -> CausalLMScorer:
    config = AnnotatorConfig(kind="hf", **overrides)
    return CausalLMScorer(
        *tiny_lm, instruction=config.instruction, few_shot=config.few_shot, max_length=config.max_length,
        batch_size=config.batch_size,
    )


def test_answer_tokens_are_the_yes_and_no_variants(tiny_lm):
    scorer = make_scorer(tiny_lm)
    decode = scorer.tokenizer.decode
    assert {decode([i]).strip().lower() for i in scorer.yes_ids} == {"yes"}
    assert {decode([i]).strip().lower() for i in scorer.no_ids} == {"no"}
    assert {decode([i]) for i in scorer.yes_ids} >= {"Yes", " Yes"}


def test_prompt_uses_the_chat_template_and_truncates_the_text(tiny_lm):
    scorer = make_scorer(tiny_lm, max_length=8)
    long_text = " ".join(f"word{i}" for i in range(200))
    prompt = scorer.prompts([long_text])[0]
    assert prompt.endswith("<|im_start|>assistant\n")
    assert "<|im_start|>system\nIs the following text unsafe" in prompt
    assert "<|im_start|>assistant\nYes<|im_end|>" in prompt and "<|im_start|>assistant\nNo<|im_end|>" in prompt
    shown = prompt.rsplit("Text: ", 1)[1].split("<|im_end|>")[0]
    assert len(scorer.tokenizer.encode(shown, add_special_tokens=False)) <= 8
    assert long_text.startswith(shown)


def test_scores_are_finite_deterministic_and_batch_size_invariant(tiny_lm):
    batched = make_scorer(tiny_lm, batch_size=4)(TEXTS)
    assert batched.shape == (len(TEXTS),) and np.isfinite(batched).all()
    np.testing.assert_array_equal(make_scorer(tiny_lm, batch_size=4)(TEXTS), batched)
    # Each text alone (no padding) vs. left-padded among longer texts: same score. 1e-4 allows float32 rounding;
    # right padding or a wrong last-token index changes these scores by ~0.1.
    alone = np.array([make_scorer(tiny_lm, batch_size=1)([text])[0] for text in TEXTS])
    np.testing.assert_allclose(batched, alone, atol=1e-4)
    assert np.ptp(batched) > 1e-3  # texts are told apart, not all read at a pad position


def test_no_chat_template_falls_back_to_plain_prompt_with_warning(tiny_lm, caplog):
    model, tokenizer = tiny_lm
    plain_tokenizer = AutoTokenizer.from_pretrained(tokenizer.name_or_path)
    plain_tokenizer.chat_template = None
    with caplog.at_level(logging.WARNING, logger="refine.annotators.hf_causal"):
        scorer = make_scorer((model, plain_tokenizer))
    assert "has no chat template" in caplog.text
    assert scorer.prompts(["hello"])[0].endswith("Text: hello\nAnswer:")
    assert np.isfinite(scorer(TEXTS[:3])).all()


def test_interrupted_annotation_resumes_to_the_uninterrupted_result(tiny_llama_dir, tmp_path, monkeypatch):
    monkeypatch.setattr(chunks, "CHUNK_SIZE", 4)  # 10 texts → chunks of 4, 4, 2; batch 2 → 2 forwards per chunk
    config = hf_config(tiny_llama_dir)
    expected = annotate_corpus(make_corpus(), config, tmp_path / "straight")

    real_forward = LlamaForCausalLM.forward
    calls = []
    fail_on_call = [3]  # the first forward of the second chunk

    def forward_failing_in_chunk_2(self, *args, **kwargs):
        calls.append(1)
        if len(calls) in fail_on_call:
            raise RuntimeError("interrupted")
        return real_forward(self, *args, **kwargs)

    monkeypatch.setattr(LlamaForCausalLM, "forward", forward_failing_in_chunk_2)
    stage = tmp_path / "interrupted"
    with pytest.raises(RuntimeError, match="interrupted"):
        annotate_corpus(make_corpus(), config, stage)
    assert (stage / "partial" / "chunk-00000.parquet").exists()
    assert not (stage / "partial" / "chunk-00001.parquet").exists()
    assert not (stage / LABELS_FILE).exists()

    calls.clear()
    fail_on_call.clear()
    resumed = annotate_corpus(make_corpus(), config, stage)
    assert len(calls) == 3  # only chunks 2 and 3 were scored: 2 + 1 forwards
    pd.testing.assert_frame_equal(resumed, expected)
    assert resumed["pseudo_label"][:8].sum() == 4  # the top half of the 8 training texts
    pd.testing.assert_frame_equal(annotate_corpus(make_corpus(), config, stage), expected)


def test_corrupt_chunk_names_the_file(tiny_llama_dir, tmp_path, monkeypatch):
    monkeypatch.setattr(chunks, "CHUNK_SIZE", 4)
    (tmp_path / "partial").mkdir()
    (tmp_path / "partial" / "chunk-00001.parquet").write_bytes(b"garbage")
    with pytest.raises(ValueError, match=r"chunk-00001.parquet is corrupt .*; delete it and rerun"):
        annotate_corpus(make_corpus(), hf_config(tiny_llama_dir), tmp_path)


@pytest.mark.slow
def test_packaged_smollm2_annotates_end_to_end(tmp_path):
    # The real default model (GGUF, ~20 s to load). Its labels are noise-level, so only the plumbing is checked.
    config = AnnotatorConfig(kind="hf", threshold="positive_fraction", positive_fraction=0.5, batch_size=4)
    labels = annotate_corpus(make_corpus(), config, tmp_path)
    assert np.isfinite(labels["annotator_score"]).all()
    assert labels["pseudo_label"][:8].sum() == 4
