"""kind=openai against a real OpenAI-compatible server: `transformers serve` on 127.0.0.1, end to end through refine.

The served model is a one-layer Llama with the real SmolLM2 tokenizer and chat template, wired by hand so that its
greedy first reply token is "Yes" when the text holds one of the unsafe verbs of the test corpus and "No" otherwise
(the packaged SmolLM2-135M answers "No" to every corpus text, which puts all of them in one class, and takes ~5 s a
request on the shared 2-core machine). Nothing leaves the machine: the model is a local folder, HF_HUB_OFFLINE=1.

How the wiring works (every other weight is 0):

- embeddings: dimension 1 is 1 for every token, dimension 0 is 1 for the marked verbs (those not in the fixed prompt);
- attention: q = k = 0, so each position takes the plain mean of the (RMS-normalised) embeddings before it; v copies
  dimensions 0, 1 and o writes them to dimensions 2, 3. At the reply position, dimension 2 is 0 unless the prompt holds
  a marked verb (then it is > 0), and dimension 3 is about sqrt(hidden) for any prompt;
- lm_head: "Yes" reads SCALE * (dim 2 - THRESHOLD * dim 3) and "No" its negative, every other token 0; so exactly one
  of the two is positive, and greedy decoding says Yes iff a marked verb is in the text.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import requests
import torch

from refine.cli import main
from tests.refine.conftest import UNSAFE_WORDS, make_corpus

HIDDEN = 64
THRESHOLD = 1e-4  # one marked token in a prompt of L tokens gives dim2/dim3 ~ 0.7 / L, far above 1e-4 for L < 5,000
SCALE = 1000.0  # Yes/No logits of order 1, not 1e-3: no near-ties with the other tokens' exact 0
N_TEXTS = 24
START_TIMEOUT_S = 120
SERVE_EXTRAS = ("fastapi", "uvicorn", "openai")  # transformers[serving], besides pydantic, starlette and rich


def marked_verbs(tokenizer, config) -> dict[str, int]:
    """Corpus verbs that are one token (" kill") and do not occur in the fixed part of the prompt ("hurt" does)."""
    from refine.annotators.prompts import build_messages

    fixed = set(tokenizer.apply_chat_template(build_messages("", instruction=config.instruction,
                                                             few_shot=config.few_shot),
                                              add_generation_prompt=True, tokenize=True, return_dict=False))
    verbs = {}
    for word in UNSAFE_WORDS:
        ids = tokenizer.encode(f" {word}", add_special_tokens=False)
        if len(ids) == 1 and ids[0] not in fixed:
            verbs[word] = ids[0]
    return verbs


@pytest.fixture(scope="module")
def yes_no_llama(tmp_path_factory, smollm2_tokenizer):
    """``(folder, marked verbs)``: the hand-wired Llama of the module docstring, saved with the SmolLM2 tokenizer."""
    from transformers import LlamaConfig, LlamaForCausalLM

    from refine.config import AnnotatorConfig

    tokenizer = smollm2_tokenizer
    verbs = marked_verbs(tokenizer, AnnotatorConfig(kind="openai", base_url="x", model_name_or_path="m"))
    config = LlamaConfig(
        vocab_size=len(tokenizer), hidden_size=HIDDEN, intermediate_size=8, num_hidden_layers=1, num_attention_heads=1,
        num_key_value_heads=1, max_position_embeddings=4096, tie_word_embeddings=False,
        pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id, bos_token_id=tokenizer.bos_token_id,
    )
    model = LlamaForCausalLM(config)
    yes, no = tokenizer.convert_tokens_to_ids(["Yes", "No"])
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.zero_()
        layer = model.model.layers[0]
        for norm in (model.model.norm, layer.input_layernorm, layer.post_attention_layernorm):
            norm.weight.fill_(1.0)
        embeddings = model.model.embed_tokens.weight
        embeddings[:, 1] = 1.0
        embeddings[list(verbs.values()), 0] = 1.0
        attention = layer.self_attn
        attention.v_proj.weight[0, 0] = attention.v_proj.weight[1, 1] = 1.0
        attention.o_proj.weight[2, 0] = attention.o_proj.weight[3, 1] = 1.0
        model.lm_head.weight[yes, 2], model.lm_head.weight[yes, 3] = SCALE, -SCALE * THRESHOLD
        model.lm_head.weight[no] = -model.lm_head.weight[yes]
    model.generation_config.do_sample = False
    folder = tmp_path_factory.mktemp("yes_no_llama")
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder, verbs


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def served(yes_no_llama, tmp_path_factory):
    """``transformers serve`` of the wired model on a free loopback port: ``(base_url, model name, log file)``."""
    for module in SERVE_EXTRAS:
        pytest.importorskip(module, reason="transformers serve needs transformers[serving]")
    folder, _ = yes_no_llama
    port = free_port()
    log = tmp_path_factory.mktemp("serve") / "serve.log"
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    with log.open("w") as handle:
        server = subprocess.Popen(
            [sys.executable, "-m", "transformers.cli.transformers", "serve", str(folder), "--host", "127.0.0.1",
             "--port", str(port), "--device", "cpu"],
            stdout=handle, stderr=subprocess.STDOUT, env=env,
        )
    base_url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + START_TIMEOUT_S
        while True:
            assert server.poll() is None, f"transformers serve exited: {log.read_text()[-3000:]}"
            try:
                if requests.get(f"{base_url}/health", timeout=1).ok:
                    break
            except requests.ConnectionError:
                pass
            assert time.monotonic() < deadline, f"transformers serve did not start: {log.read_text()[-3000:]}"
            time.sleep(0.5)
        yield f"{base_url}/v1", str(folder), log
    finally:
        server.terminate()
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()


def chat_requests(log: Path) -> int:
    """Chat completions the server answered so far (uvicorn's access log, one line each)."""
    time.sleep(0.2)  # the access line is written after the reply is sent
    return sum("POST /v1/chat/completions" in line for line in log.read_text().splitlines())


@pytest.mark.slow
def test_refine_with_a_transformers_serve_annotator_end_to_end(served, yes_no_llama, tmp_path, record_property):
    base_url, model_name, log = served
    _, verbs = yes_no_llama
    frame = make_corpus(N_TEXTS, seed=3)
    corpus = tmp_path / "corpus.csv"
    frame.to_csv(corpus, index=False)

    # What this server does with logprobs: transformers serve (5.x) ignores the field and replies with text alone.
    probe = requests.post(f"{base_url}/chat/completions", timeout=30, json={
        "model": model_name, "messages": [{"role": "user", "content": "hello"}], "max_tokens": 1, "temperature": 0,
        "logprobs": True, "top_logprobs": 5})
    probe.raise_for_status()
    logprobs_returned = bool(probe.json()["choices"][0].get("logprobs"))
    record_property("transformers_serve_returns_logprobs", logprobs_returned)
    print(f"transformers serve returned logprobs: {logprobs_returned}")
    asked_before = chat_requests(log)

    def refine(output_dir: Path) -> int:
        return main([
            "--output_dir", str(output_dir), "--cache_dir", str(tmp_path / "cache"),
            "--data.path", str(corpus), "--data.text_column", "text", "--data.label_columns", "[label]",
            "--data.num_labeled", "8", "--data.test_fraction", "0.25",
            "--annotator.kind", "openai", "--annotator.base_url", base_url,
            "--annotator.model_name_or_path", model_name, "--annotator.max_concurrency", "2",
            "--annotator.max_retries", "1", "--annotator.request_timeout", "30",
            "--priors.unconfirmed_signal", "warn",
            "--classifier.model_name_or_path", "minilm", "--classifier.max_length", "16",
            "--train.num_train_epochs", "20", "--train.learning_rate", "0.01", "--train.batch_size", "32",
            "--loop.iterations", "1",
        ])

    assert refine(tmp_path / "run") == 0
    labels = pd.read_parquet(tmp_path / "run" / "annotate" / "labels.parquet")
    assert chat_requests(log) - asked_before == N_TEXTS  # each text asked once
    said_yes = np.array([any(f" {verb} " in text for verb in verbs) for text in frame["text"]])
    assert 0 < said_yes.sum() < N_TEXTS  # both answers occur (corpus and seed chosen so)
    np.testing.assert_array_equal(labels["pseudo_label"], said_yes.astype(np.int64))
    if logprobs_returned:
        assert not np.isin(labels["annotator_score"], [-1.0, 1.0]).all()
    else:  # read from the reply text: +1 for Yes, -1 for No
        np.testing.assert_array_equal(labels["annotator_score"], np.where(said_yes, 1.0, -1.0))
    assert (tmp_path / "run" / "refine" / "iter_1" / "metrics.json").is_file()
    assert "base_url" in (tmp_path / "run" / "config.yaml").read_text()

    # Resume: the same run reads its labels back, and a new run on the same cache reads the cached scores.
    assert refine(tmp_path / "run") == 0
    assert refine(tmp_path / "another_run") == 0
    assert chat_requests(log) - asked_before == N_TEXTS  # no new request
    again = pd.read_parquet(tmp_path / "another_run" / "annotate" / "labels.parquet")
    pd.testing.assert_frame_equal(again, labels)
    assert json.loads((tmp_path / "another_run" / "refine" / "summary.json").read_text())["iterations_run"] == 1
