"""kind=openai against a real HTTP server on 127.0.0.1 that speaks the chat-completions protocol deterministically.

The server answers Yes when the last user message contains "kill" and No otherwise, with top-5 logprobs (or, in
no-logprobs mode, a bare reply; in null mode, logprobs whose numbers are null). Texts containing "ratelimit" get one 429 (Retry-After: 0) first, texts containing
"flaky" one 500 first. It counts requests per text and the most requests in flight at once.
"""

from __future__ import annotations

import json
import logging
import math
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np
import pandas as pd
import pytest

from refine.annotators import LABELS_FILE, annotate_corpus, chunks, openai_chat
from refine.annotators.openai_chat import AnnotatorRequestError, answer_score, retry_delay
from refine.config import AnnotatorConfig

KEY_ENV = "SILR_TEST_ANNOTATOR_KEY"
KEY = "sk-test-0123456789SECRET"
YES_TOP = [("Yes", -0.1), ("No", -2.5), (" yes", -4.0), ("I", -5.0), ("Sure", -6.0)]
NO_TOP = [("No", -0.2), ("Yes", -1.9), ("no", -4.5), ("The", -5.5), ("I", -7.0)]
MAYBE_TOP = [("Yes", -0.5), ("Maybe", -1.5), ("I", -3.0)]  # "No" is missing from the top alternatives


def lse(*values):
    return math.log(sum(math.exp(v) for v in values))


class FakeChatServer:
    """A chat-completions server in a thread; ``mode`` is ``logprobs``, ``plain``, ``null`` or ``status:<code>``."""

    def __init__(self, mode: str = "logprobs", delay: float = 0.05):
        self.mode, self.delay = mode, delay
        self.lock = threading.Lock()
        self.in_flight = self.max_in_flight = 0
        self.requests: list[dict] = []  # {"text", "authorization", "body"}
        self.fail_once = {"ratelimit": 429, "flaky": 500}
        self.always_fail_for: dict[str, int] = {}
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                with server.lock:
                    server.in_flight += 1
                    server.max_in_flight = max(server.max_in_flight, server.in_flight)
                try:
                    time.sleep(server.delay)
                    status, payload, headers = server.answer(self.path, body, self.headers.get("Authorization"))
                finally:
                    with server.lock:
                        server.in_flight -= 1
                data = json.dumps(payload).encode()
                self.send_response(status)
                for name, value in {"Content-Type": "application/json", **headers}.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                if headers.get("X-Cut"):  # the connection drops mid-reply
                    self.wfile.write(data[: len(data) // 2])
                    self.close_connection = True
                else:
                    self.wfile.write(data)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.httpd.serve_forever, args=(0.02,), daemon=True)
        self.base_url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"

    def answer(self, path, body, authorization):
        text = body["messages"][-1]["content"]
        with self.lock:
            self.requests.append({"text": text, "authorization": authorization, "body": body})
            for word, status in list(self.fail_once.items()):
                if word in text:
                    del self.fail_once[word]
                    return status, {"error": {"message": "try again"}}, {"Retry-After": "0"} if status == 429 else {}
            if "dropped" in text and not any("dropped" in r["text"] for r in self.requests[:-1]):
                return 200, {"choices": []}, {"X-Cut": "1"}
            for word, status in self.always_fail_for.items():
                if word in text:
                    return status, {"error": {"message": "nope"}}, {}
        if path != "/v1/chat/completions":
            return 404, {"error": {"message": f"no route {path}"}}, {}
        if self.mode.startswith("status:"):
            return int(self.mode[7:]), {"error": {"message": f"Incorrect API key provided: {authorization}"}}, {}
        if self.mode == "plain":
            reply = "Yes." if "kill" in text else "Perhaps" if "gibberish" in text else "no"
            return 200, {"choices": [{"index": 0, "message": {"role": "assistant", "content": reply}}]}, {}
        if self.mode == "null":  # a server that lists the tokens but not their logprobs
            reply = "Yes" if "kill" in text else "No"
            top = [{"token": reply, "logprob": None}, {"token": "I", "logprob": None}]
            logprobs = {"content": [{"token": reply, "logprob": None, "top_logprobs": top}]}
            message = {"role": "assistant", "content": reply}
            return 200, {"choices": [{"index": 0, "message": message, "logprobs": logprobs}]}, {}
        top = YES_TOP if "kill" in text else MAYBE_TOP if "maybe" in text else NO_TOP
        logprobs = {"content": [{"token": top[0][0], "logprob": top[0][1],
                                 "top_logprobs": [{"token": t, "logprob": lp} for t, lp in top]}]}
        message = {"role": "assistant", "content": top[0][0]}
        return 200, {"choices": [{"index": 0, "message": message, "logprobs": logprobs}]}, {}

    def count(self, word: str) -> int:
        return sum(word in r["text"] for r in self.requests)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture(autouse=True)
def fast_backoff(monkeypatch):
    monkeypatch.setattr(openai_chat, "BACKOFF_BASE_S", 0.01)


def make_corpus(texts: list[str]) -> pd.DataFrame:
    n = len(texts)
    return pd.DataFrame({
        "id": np.arange(n), "text": texts, "gold": [-1] * n, "split": ["train"] * n, "labeled": [False] * n,
    })


def openai_config(server: FakeChatServer, **overrides) -> AnnotatorConfig:
    settings = {"kind": "openai", "base_url": server.base_url, "model_name_or_path": "judge-1",
                "api_key_env": KEY_ENV, "max_concurrency": 3, "max_retries": 3, "request_timeout": 5.0}
    return AnnotatorConfig(**{**settings, **overrides})


TEXTS = ["I will kill you", "hello there", "ratelimit me please", "a flaky request", "maybe this one", "kill ratelimit"]


def test_scores_retries_auth_and_concurrency(tmp_path, monkeypatch, caplog):
    monkeypatch.setenv(KEY_ENV, KEY)
    caplog.set_level(logging.DEBUG)
    texts = TEXTS + [f"ordinary text number {i}" for i in range(6)]
    with FakeChatServer(delay=0.1) as server:
        labels = annotate_corpus(make_corpus(texts), openai_config(server), tmp_path)
    yes = lse(-0.1, -4.0) - (-2.5)  # "Yes" and " yes" vs "No"
    no = -1.9 - lse(-0.2, -4.5)  # "Yes" vs "No" and "no"
    maybe = -0.5 - (-3.0 - 1.0)  # "No" missing: floor = min(top) - 1 = -4
    expected = [yes, no, no, no, maybe, yes] + [no] * 6
    np.testing.assert_allclose(labels["annotator_score"], expected, atol=1e-9)
    np.testing.assert_array_equal(labels["pseudo_label"], [1, 0, 0, 0, 1, 1] + [0] * 6)
    # One 429 and one 500, each retried once; every other text asked once. "kill ratelimit" saw no 429.
    assert server.count("ratelimit me") == 2 and server.count("flaky") == 2 and server.count("hello") == 1
    assert len(server.requests) == len(texts) + 2
    assert 1 < server.max_in_flight <= 3
    assert {r["authorization"] for r in server.requests} == {f"Bearer {KEY}"}
    body = server.requests[0]["body"]
    assert body["model"] == "judge-1" and body["max_tokens"] == 1 and body["temperature"] == 0
    assert body["logprobs"] is True and body["top_logprobs"] == 5
    roles = [m["role"] for m in body["messages"]]
    assert roles == ["system", "user", "assistant", "user", "assistant", "user"]
    assert body["messages"][2]["content"] == "Yes" and body["messages"][-1]["content"].startswith("Text: ")
    # The key never reaches the logs or the files.
    assert "HTTP 429" in caplog.text and "HTTP 500" in caplog.text
    assert KEY not in caplog.text
    for path in tmp_path.rglob("*"):
        if path.is_file():
            assert KEY.encode() not in path.read_bytes(), path


def test_no_key_in_environment_sends_no_authorization(tmp_path, monkeypatch):
    monkeypatch.delenv(KEY_ENV, raising=False)
    with FakeChatServer(delay=0.0) as server:
        annotate_corpus(make_corpus(TEXTS[:2]), openai_config(server), tmp_path)
    assert [r["authorization"] for r in server.requests] == [None, None]


def test_bad_key_fails_at_once_with_one_line_without_the_key(tmp_path, monkeypatch):
    monkeypatch.setenv(KEY_ENV, KEY)
    with FakeChatServer(mode="status:401", delay=0.0) as server, pytest.raises(ValueError) as err:
        annotate_corpus(make_corpus(TEXTS[:2]), openai_config(server, max_concurrency=1), tmp_path)
    message = str(err.value)
    assert "HTTP 401" in message and f"${KEY_ENV}" in message
    assert "\n" not in message and KEY not in message and "***" in message  # the server echoed it; redacted
    assert len(server.requests) == 1  # not retried, and the second text never sent
    assert not (tmp_path / LABELS_FILE).exists()


def test_key_with_a_line_ending_is_stripped(tmp_path, monkeypatch):
    monkeypatch.setenv(KEY_ENV, KEY + "\r\n")  # read from a CRLF .env file
    with FakeChatServer(delay=0.0) as server:
        annotate_corpus(make_corpus(TEXTS[:2]), openai_config(server), tmp_path)
    assert [r["authorization"] for r in server.requests] == [f"Bearer {KEY}"] * 2


def test_unsendable_key_fails_with_one_line_without_the_key(tmp_path, monkeypatch):
    """requests refuses a header with a line break inside, and its message quotes the whole header."""
    monkeypatch.setenv(KEY_ENV, KEY[:8] + "\n" + KEY[8:])
    with FakeChatServer(delay=0.0) as server, pytest.raises(ValueError) as err:
        annotate_corpus(make_corpus(TEXTS[:2]), openai_config(server, max_concurrency=1), tmp_path)
    message = str(err.value)
    assert "could not be sent (InvalidHeader)" in message and f"${KEY_ENV}" in message
    assert "\n" not in message and KEY[:8] not in message and KEY[8:] not in message
    assert server.requests == [] and not (tmp_path / LABELS_FILE).exists()


def test_error_detail_is_redacted_before_it_is_shortened(monkeypatch):
    import requests

    monkeypatch.setenv(KEY_ENV, KEY)
    scorer = openai_chat.OpenAIChatScorer(AnnotatorConfig(kind="openai", base_url="http://127.0.0.1:9/v1",
                                                          model_name_or_path="judge-1", api_key_env=KEY_ENV))
    response = requests.Response()
    response.status_code = 401
    response._content = json.dumps({"error": {"message": "x" * 185 + f" key {KEY} rejected"}}).encode()
    detail = scorer._detail(response)
    assert len(detail) <= 200 and KEY[:6] not in detail


def test_a_reply_cut_off_mid_body_is_retried(tmp_path):
    with FakeChatServer(delay=0.0) as server:
        labels = annotate_corpus(make_corpus(["a dropped reply", "I will kill you"]), openai_config(server), tmp_path)
    assert server.count("dropped") == 2  # ChunkedEncodingError, then an answer
    np.testing.assert_array_equal(labels["pseudo_label"], [0, 1])


def test_wrong_path_names_base_url(tmp_path):
    with FakeChatServer(delay=0.0) as server:
        config = openai_config(server, base_url=server.base_url.removesuffix("/v1"))
        with pytest.raises(ValueError, match="HTTP 404 .*check annotator.base_url"):
            annotate_corpus(make_corpus(TEXTS[:2]), config, tmp_path)


def test_server_without_logprobs_is_read_from_the_reply(tmp_path, monkeypatch):
    with FakeChatServer(mode="plain", delay=0.0) as server:
        labels = annotate_corpus(make_corpus(TEXTS[:2]), openai_config(server), tmp_path / "ok")
        np.testing.assert_array_equal(labels["annotator_score"], [1.0, -1.0])
        with pytest.raises(ValueError, match=r"reply 'Perhaps' is neither yes nor no after 1 retries"):
            annotate_corpus(
                make_corpus(["kill", "gibberish"]), openai_config(server, max_retries=1), tmp_path / "bad"
            )
    assert server.count("gibberish") == 2


def test_persistent_server_errors_and_dead_servers_raise_after_retries(tmp_path):
    with FakeChatServer(delay=0.0) as server:
        server.always_fail_for["down"] = 503
        with pytest.raises(AnnotatorRequestError, match=r"after 2 retries \(last: HTTP 503\)"):
            annotate_corpus(make_corpus(["down", "x"]), openai_config(server, max_retries=2), tmp_path / "a")
        assert server.count("down") == 3
    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    config = AnnotatorConfig(kind="openai", base_url=f"http://127.0.0.1:{port}/v1", model_name_or_path="m",
                             max_retries=1, request_timeout=2.0)
    with pytest.raises(AnnotatorRequestError, match=r"last: ConnectionError"):
        annotate_corpus(make_corpus(["x", "y"]), config, tmp_path / "b")


def test_interrupted_run_resumes_without_asking_again(tmp_path, monkeypatch):
    monkeypatch.setattr(chunks, "CHUNK_SIZE", 2)
    texts = ["kill a", "b", "c", "stop d", "e", "f"]
    with FakeChatServer(delay=0.0) as server:
        server.always_fail_for["stop"] = 400
        with pytest.raises(ValueError, match="HTTP 400"):
            annotate_corpus(make_corpus(texts), openai_config(server, max_concurrency=1), tmp_path)
        assert (tmp_path / "partial" / "chunk-00000.parquet").exists() and not (tmp_path / LABELS_FILE).exists()
        server.always_fail_for.clear()
        resumed = annotate_corpus(make_corpus(texts), openai_config(server), tmp_path)
        assert server.count("kill a") == 1 and server.count("b") == 1  # chunk 0 was read back, not re-asked
    np.testing.assert_array_equal(resumed["pseudo_label"], [1, 0, 0, 0, 0, 0])


def test_answer_score_by_hand():
    def body(top=None, content="x"):
        choice = {"message": {"content": content}}
        if top is not None:
            choice["logprobs"] = {"content": [{"token": "t", "logprob": 0.0,
                                               "top_logprobs": [{"token": t, "logprob": lp} for t, lp in top]}]}
        return {"choices": [choice]}

    assert answer_score(body([("Yes", -1.0), ("No", -2.0)])) == pytest.approx(1.0)
    assert answer_score(body([("No", -0.5), ("Hmm", -3.0)])) == pytest.approx((-4.0) - (-0.5))  # Yes floored at -4
    assert answer_score(body([("Hmm", -0.5), ("I", -3.0)])) == 0.0  # neither listed: undecided
    legacy = {"choices": [{"message": {"content": "Yes"}, "logprobs": {"top_logprobs": [{"Yes": -1.0, " no": -3.0}]}}]}
    assert answer_score(legacy) == pytest.approx(2.0)
    assert answer_score(body(content=" YES, it is")) == 1.0
    assert answer_score(body(content="No.")) == -1.0
    assert answer_score(body(content="Nope")) is None


def test_retry_delay_honours_retry_after_and_backs_off(monkeypatch):
    monkeypatch.setattr(openai_chat, "BACKOFF_BASE_S", 1.0)
    assert retry_delay(0, "0") == 0.0
    assert retry_delay(3, "2.5") == 2.5
    assert retry_delay(0, "100000") == openai_chat.BACKOFF_MAX_S
    # No Retry-After: base * 2**attempt plus up to one base of jitter.
    assert 4.0 <= retry_delay(2, None) <= 5.0
    assert 1.0 <= retry_delay(0, "not a date") <= 2.0


def test_null_logprobs_are_read_from_the_reply(tmp_path):
    """Some OpenAI-compatible servers send "logprob": null; the reply text decides, as when logprobs are absent."""
    with FakeChatServer(mode="null", delay=0.0) as server:
        labels = annotate_corpus(make_corpus(TEXTS[:2]), openai_config(server), tmp_path)
    np.testing.assert_array_equal(labels["annotator_score"], [1.0, -1.0])
    assert len(server.requests) == 2  # read at once, not retried


@pytest.mark.parametrize("logprobs", [
    {"content": [{"token": "No", "logprob": None, "top_logprobs": None}]},
    {"content": [{"token": "No", "logprob": -0.1, "top_logprobs": [{"token": "No", "logprob": None}]}]},
    {"content": [{"token": "No", "logprob": -0.1, "top_logprobs": [{"token": "No"}, {"token": "Yes", "logprob": -1}]}]},
    {"content": [{"token": "No", "logprob": -0.1, "top_logprobs": [{"token": None, "logprob": -0.1}]}]},
    {"content": [{"token": "No", "logprob": -0.1, "top_logprobs": ["No"]}]},
    {"content": [None]},
    {"content": None, "top_logprobs": [{"No": None, "Yes": -3.0}]},
    {"content": [{"token": "No", "logprob": -0.1, "top_logprobs": [{"token": "No", "logprob": "NaN"}]}]},
])
def test_unreadable_logprobs_fall_back_to_the_reply_text(logprobs):
    assert answer_score({"choices": [{"message": {"content": "Yes"}, "logprobs": logprobs}]}) == 1.0


CREDENTIALS_URL = "http://alice:s3cret-pw@127.0.0.1:{port}/v1"


def assert_no_credentials(text: str) -> None:
    import base64

    for secret in ("alice", "s3cret-pw", base64.b64encode(b"alice:s3cret-pw").decode()):
        assert secret not in text, text


def test_credentials_in_base_url_are_used_but_never_shown(tmp_path, monkeypatch, caplog):
    """http://user:pass@host is sent as basic auth; every message and the logs show http://***@host instead."""
    import base64

    caplog.set_level(logging.DEBUG)
    monkeypatch.delenv(KEY_ENV, raising=False)
    with FakeChatServer(delay=0.0) as server:
        port = server.httpd.server_address[1]
        config = openai_config(server, base_url=CREDENTIALS_URL.format(port=port), max_retries=1)
        annotate_corpus(make_corpus(["kill", "ratelimit"]), config, tmp_path / "ok")  # one 429, retried
        basic = f"Basic {base64.b64encode(b'alice:s3cret-pw').decode()}"
        assert {r["authorization"] for r in server.requests} == {basic}
        assert_no_credentials(repr(openai_chat.OpenAIChatScorer(config)))
        messages = []
        for mode, base_url in [("logprobs", config.base_url.removesuffix("/v1")), ("status:401", config.base_url),
                               ("plain", config.base_url)]:
            server.mode = mode  # 404 on a wrong path; 401 echoing the basic-auth header; a reply neither yes nor no
            settings = openai_config(server, base_url=base_url, max_retries=1, max_concurrency=1)
            with pytest.raises(ValueError) as err:
                annotate_corpus(make_corpus(["gibberish", "x"]), settings, tmp_path / mode[:6])
            messages.append(str(err.value))
        server.always_fail_for["down"] = 503
        server.mode = "logprobs"
        with pytest.raises(AnnotatorRequestError) as err:
            annotate_corpus(make_corpus(["down", "x"]), config, tmp_path / "down")
        messages.append(str(err.value))
    bad_port = openai_config(server, base_url="http://alice:s3cret-pw@127.0.0.1:99999/v1")
    with pytest.raises(ValueError) as err:  # unsendable
        annotate_corpus(make_corpus(["x", "y"]), bad_port, tmp_path / "bad")
    messages.append(str(err.value))
    assert [m.split(" ")[0] for m in messages[:2]] == [f"http://***@127.0.0.1:{port}/chat/completions",
                                                       f"http://***@127.0.0.1:{port}/v1/chat/completions"]
    assert "HTTP 404" in messages[0] and "HTTP 401" in messages[1] and "neither yes nor no" in messages[2]
    assert "HTTP 503" in messages[3] and "could not be sent" in messages[4]
    for text in [*messages, caplog.text]:
        assert_no_credentials(text)
