"""reward.server over real HTTP on 127.0.0.1: OpenRLHF protocol, limits, errors, and concurrent load."""

from __future__ import annotations

import http.client
import json
import threading
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from reward.config import ServerConfig
from reward.server import make_server

TOLERANCE = 1e-4  # the same text padded in different batches differs by ~1e-6


@pytest.fixture(scope="module")
def server(reward_model):
    server = make_server(reward_model, host="127.0.0.1", port=0, limits=ServerConfig(max_batch=8, max_chars=1000))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()
    thread.join(timeout=10)


def request(server, method: str, path: str, body: bytes | None = None, headers: dict | None = None):
    host, port = server.server_address[:2]
    connection = http.client.HTTPConnection(host, port, timeout=30)
    try:
        connection.request(method, path, body=body, headers={"Content-Type": "application/json", **(headers or {})})
        response = connection.getresponse()
        return response.status, json.loads(response.read())
    finally:
        connection.close()


def post(server, payload) -> tuple[int, dict]:
    return request(server, "POST", "/get_reward", json.dumps(payload).encode())


def test_openrlhf_reply_keys_and_values(server, reward_model, tiny_run):
    texts = tiny_run.texts[:3]
    status, reply = post(server, {"query": texts, "prompts": ["", "", ""], "labels": [None, None, None]})
    assert status == 200 and set(reply) == {"rewards", "scores", "extra_logs"}
    expected = reward_model.score(texts)
    np.testing.assert_allclose(reply["rewards"], expected, atol=TOLERANCE)
    assert reply["scores"] == reply["rewards"] and reply["extra_logs"]["reward_raw"] == reply["rewards"]


def test_prompt_prefix_splits_the_query_into_a_pair(server, reward_model):
    status, reply = post(server, {"query": ["How do I bake bread? Knead it."], "prompts": ["How do I bake bread?"]})
    assert status == 200
    expected = reward_model.score_pairs(["How do I bake bread?"], [" Knead it."])
    np.testing.assert_allclose(reply["rewards"], expected, atol=TOLERANCE)


def test_health_endpoint(server):
    status, reply = request(server, "GET", "/health")
    assert status == 200 and reply["status"] == "ok" and reply["max_batch"] == 8


@pytest.mark.parametrize(
    ("body", "status", "message"),
    [
        (b"", 400, "malformed JSON"),
        (b"{not json", 400, "malformed JSON"),
        (b"[1, 2]", 400, "JSON object"),
        (json.dumps({"prompts": ["a"]}).encode(), 400, "missing `query`"),
        (json.dumps({"query": []}).encode(), 400, "`query` is empty"),
        (json.dumps({"query": "one string"}).encode(), 400, "list of strings"),
        (json.dumps({"query": ["a", 3]}).encode(), 400, "list of strings"),
        (json.dumps({"query": ["a", "b"], "prompts": ["a"]}).encode(), 400, "1 prompts for 2 queries"),
        (json.dumps({"query": ["a"] * 9}).encode(), 413, "at most 8 per request"),
        (json.dumps({"query": ["x" * 1001]}).encode(), 413, "at most 1000"),
        (b"[" * 20_000, 400, "JSON body not accepted (RecursionError)"),
        (b'{"query": ["a"], "n": ' + b"1" * 5000 + b"}", 400, "JSON body not accepted (ValueError)"),
        (b'{"query": ["\\ud800 hi"]}', 400, "`query[0]` is not valid Unicode text"),
    ],
)
def test_bad_requests_get_json_errors(server, body, status, message):
    got, reply = request(server, "POST", "/get_reward", body)
    assert got == status and message in reply["error"]


def test_wrong_path_oversized_body_and_server_survives(server, tiny_run):
    assert request(server, "GET", "/nope")[0] == 404
    status, reply = request(server, "PUT", "/get_reward", b"{}")  # http.server's own errors are JSON too
    assert status == 501 and "Unsupported method" in reply["error"]
    connection = http.client.HTTPConnection(*server.server_address[:2], timeout=30)
    connection.request("HEAD", "/get_reward")
    response = connection.getresponse()  # a HEAD reply has headers only, and says the connection closes
    assert response.status == 501 and response.read() == b"" and response.getheader("Connection") == "close"
    connection.close()
    assert request(server, "POST", "/score", json.dumps({"query": ["a"]}).encode())[0] == 404
    big = json.dumps({"query": ["y"], "padding": "z" * 200_000}).encode()  # beyond ServerConfig.max_body_bytes
    status, reply = request(server, "POST", "/get_reward", big)
    assert status == 413 and "exceeds" in reply["error"]
    assert post(server, {"query": tiny_run.texts[:1]})[0] == 200


def test_concurrent_clients_get_their_own_rewards(server, reward_model, tiny_run):
    pool = tiny_run.texts[:40]
    expected = dict(zip(pool, reward_model.score(pool), strict=True))

    def client(worker: int) -> int:
        rng = np.random.default_rng(worker)
        for _ in range(50):
            texts = [pool[i] for i in rng.choice(len(pool), size=int(rng.integers(1, 4)), replace=False)]
            status, reply = post(server, {"query": texts})
            assert status == 200
            np.testing.assert_allclose(reply["rewards"], [expected[t] for t in texts], atol=TOLERANCE)
        return 50

    with ThreadPoolExecutor(max_workers=8) as executor:
        assert sum(executor.map(client, range(8))) == 400
