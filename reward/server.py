"""An HTTP reward server speaking OpenRLHF's remote reward-model protocol (standard library only).

Protocol (as in OpenRLHF's ``openrlhf/cli/serve_rm.py`` and ``openrlhf/utils/remote_rm_utils.py``)::

    POST /get_reward   {"query": [text, ...], "prompts": [text, ...] (optional), "labels": [...] (ignored)}
    → 200              {"rewards": [float, ...], "scores": [float, ...], "extra_logs": {"reward_raw": [float, ...]}}

``rewards`` and ``scores`` are the same list, one reward per query (higher means safer; z-normalised when the server
runs with ``--normalize``); ``extra_logs.reward_raw`` holds the rewards before normalisation, one per query as
OpenRLHF expects of extra logs. OpenRLHF's ``query`` is the prompt and response joined by the policy's chat template;
each query becomes the reward model's text this way:

1. with ``--policy-tokenizer``, the chat markup is parsed (:class:`reward.chat_text.ChatTextExtractor`) and the
   prompt and response are joined with the reward template;
2. else, if ``prompts[i]`` is a prefix of ``query[i]``, the pair ``(prompts[i], rest of query)`` uses the template;
3. else the query is scored as it is.

``GET /health`` → ``{"status": "ok", ...}``. Errors are JSON ``{"error": "..."}``: malformed JSON, a missing or empty
``query``, non-string items → 400; too many texts (``max_batch``), a text longer than ``max_chars``, or an oversized
body → 413; unknown path → 404; an unexpected failure → 500. No request can stop the server. Model calls are
serialised with a lock (one forward pass at a time, requests handled on threads).
"""

from __future__ import annotations

import json
import logging
import threading
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from reward.chat_text import ChatTextExtractor
from reward.config import ServerConfig
from reward.model import RewardModel

logger = logging.getLogger(__name__)

REWARD_PATH = "/get_reward"
HEALTH_PATH = "/health"
DISCARD_FACTOR = 16  # oversized bodies up to this multiple of the limit are read and dropped before the 413
SOCKET_TIMEOUT_SECONDS = 120  # per read or write on a connection, so a stalled client cannot hold a thread


class RequestError(ValueError):
    """A request the server refuses, with the HTTP status to answer."""

    def __init__(self, status: HTTPStatus, message: str):
        super().__init__(message)
        self.status = status


class RewardService:
    """The server's logic without HTTP: validate a request body, build texts, score them under a lock."""

    def __init__(self, reward_model: RewardModel, limits: ServerConfig, extractor: ChatTextExtractor | None = None):
        self.reward_model = reward_model
        self.limits = limits
        self.extractor = extractor
        self.lock = threading.Lock()

    def _string_list(self, value: Any, key: str) -> list[str]:
        if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
            raise RequestError(HTTPStatus.BAD_REQUEST, f"`{key}` must be a list of strings.")
        if len(value) > self.limits.max_batch:
            raise RequestError(HTTPStatus.REQUEST_ENTITY_TOO_LARGE,
                               f"`{key}` has {len(value)} texts; at most {self.limits.max_batch} per request.")
        for i, text in enumerate(value):
            if len(text) > self.limits.max_chars:
                raise RequestError(HTTPStatus.REQUEST_ENTITY_TOO_LARGE,
                                   f"`{key}[{i}]` has {len(text)} characters; at most {self.limits.max_chars}.")
            try:
                text.encode("utf-8")
            except UnicodeEncodeError:  # a lone surrogate escape ("\ud800") is valid JSON but not text
                raise RequestError(HTTPStatus.BAD_REQUEST, f"`{key}[{i}]` is not valid Unicode text (a lone "
                                   "surrogate); send UTF-8 text.") from None
        return value

    def texts(self, body: Any) -> list[str]:
        """The reward model's input texts for a request body (see the module docstring)."""
        if not isinstance(body, dict):
            raise RequestError(HTTPStatus.BAD_REQUEST, "the body must be a JSON object with a `query` list.")
        if "query" not in body:
            raise RequestError(HTTPStatus.BAD_REQUEST, "missing `query`: send {\"query\": [text, ...]}.")
        queries = self._string_list(body["query"], "query")
        if not queries:
            raise RequestError(HTTPStatus.BAD_REQUEST, "`query` is empty; send at least one text.")
        prompts = body.get("prompts")
        if prompts is not None:
            prompts = self._string_list(prompts, "prompts")
            if len(prompts) != len(queries):
                raise RequestError(HTTPStatus.BAD_REQUEST,
                                   f"{len(prompts)} prompts for {len(queries)} queries; send one prompt per query.")
        texts = []
        for i, query in enumerate(queries):
            if self.extractor is not None:
                texts.append(self.extractor.to_text(query))
            elif prompts is not None and prompts[i] and query.startswith(prompts[i]):
                texts.append(self.reward_model.format_pair(prompts[i], query[len(prompts[i]) :]))
            else:
                texts.append(query)
        return texts

    def rewards(self, body: Any) -> dict[str, Any]:
        """The reply to a valid ``/get_reward`` body."""
        texts = self.texts(body)
        model = self.reward_model
        with self.lock:
            raw = model.score(texts, normalize=False)
        rewards = model.normalize_rewards(raw) if model.normalize else raw
        rewards_list = [float(r) for r in rewards]
        return {"rewards": rewards_list, "scores": rewards_list, "extra_logs": {"reward_raw": [float(r) for r in raw]}}

    def health(self) -> dict[str, Any]:
        metadata = self.reward_model.metadata
        return {"status": "ok", "max_batch": self.limits.max_batch, "max_chars": self.limits.max_chars,
                "normalize": self.reward_model.normalize, "threshold": metadata.threshold,
                "higher_is_safer": metadata.higher_is_safer}


def make_handler(service: RewardService) -> type[BaseHTTPRequestHandler]:
    """A request handler class bound to ``service``."""

    class RewardHandler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        server_version = "silr-reward/1"
        timeout = SOCKET_TIMEOUT_SECONDS  # a client that stalls mid-request frees its thread

        def send_error(self, code: int, message: str | None = None, explain: str | None = None) -> None:
            """http.server's own errors (bad request line, unsupported method) as JSON, like every other reply."""
            self.log_error("code %d, message %s", code, message)
            self.close_connection = True
            try:
                status = HTTPStatus(code)
            except ValueError:
                status = HTTPStatus.BAD_REQUEST
            self._error(status, message or status.phrase)

        def _reply(self, status: HTTPStatus, payload: dict[str, Any]) -> None:
            data = json.dumps(payload).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            if self.close_connection:
                self.send_header("Connection", "close")
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(data)

        def _error(self, status: HTTPStatus, message: str) -> None:
            self._reply(status, {"error": message})

        def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
            if self.path.split("?", 1)[0].rstrip("/") == HEALTH_PATH:
                self._reply(HTTPStatus.OK, service.health())
            else:
                self._error(HTTPStatus.NOT_FOUND, f"unknown path {self.path}; use POST {REWARD_PATH} or GET {HEALTH_PATH}.")

        def do_POST(self) -> None:  # noqa: N802
            try:
                length = int(self.headers.get("Content-Length", ""))
            except ValueError:
                self.close_connection = True
                self._error(HTTPStatus.LENGTH_REQUIRED, "send a Content-Length header with the JSON body.")
                return
            limit = service.limits.max_body_bytes
            if length < 0 or length > limit:
                if 0 < length <= DISCARD_FACTOR * limit:
                    self._discard(length)  # read it, so the client is not reset while still sending
                self.close_connection = True  # an unread body would be parsed as the next request
                self._error(HTTPStatus.REQUEST_ENTITY_TOO_LARGE,
                            f"body of {length} bytes exceeds {limit}; send fewer or shorter texts.")
                return
            raw = self.rfile.read(length)
            if self.path.split("?", 1)[0].rstrip("/") != REWARD_PATH:
                self._error(HTTPStatus.NOT_FOUND, f"unknown path {self.path}; use POST {REWARD_PATH}.")
                return
            try:
                body = json.loads(raw.decode("utf-8"))
            except (UnicodeDecodeError, json.JSONDecodeError) as err:
                self._error(HTTPStatus.BAD_REQUEST, f"malformed JSON body ({err}); send {{\"query\": [text, ...]}}.")
                return
            except (ValueError, RecursionError) as err:  # json's limits: integers over 4300 digits, deep nesting
                self._error(HTTPStatus.BAD_REQUEST, f"JSON body not accepted ({type(err).__name__}); send "
                                                    "{\"query\": [text, ...]}.")
                return
            try:
                self._reply(HTTPStatus.OK, service.rewards(body))
            except RequestError as err:
                self._error(err.status, str(err))
            except Exception as err:  # never let one request take the server down
                logger.exception("reward request failed")
                self._error(HTTPStatus.INTERNAL_SERVER_ERROR, f"scoring failed: {type(err).__name__}: {err}")

        def _discard(self, length: int) -> None:
            while length > 0:
                chunk = self.rfile.read(min(length, 1 << 16))
                if not chunk:
                    return
                length -= len(chunk)

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 (http.server's signature)
            logger.debug("%s " + format, self.address_string(), *args)

    return RewardHandler


def make_server(
    reward_model: RewardModel, *, host: str = "127.0.0.1", port: int = 5000, limits: ServerConfig | None = None,
    extractor: ChatTextExtractor | None = None,
) -> ThreadingHTTPServer:
    """A bound, not yet running server (call ``serve_forever()``; port 0 picks a free port, see ``server_address``)."""
    service = RewardService(reward_model, limits or ServerConfig(), extractor)
    server = ThreadingHTTPServer((host, port), make_handler(service))
    server.daemon_threads = True
    return server
