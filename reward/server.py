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
body → 413; a body not received within ``request_timeout`` → 408; unknown path → 404; an unexpected failure → 500
with a generic message and an id (the details go to the server log only, never to the client). No request can stop
the server.

Resource limits (:class:`reward.config.ServerConfig`): each request (request line, headers and body) must arrive
within ``request_timeout`` seconds in total, however slowly its bytes drip in; a kept-alive connection that sends no
next request within that time is closed. At most ``max_connections`` connections are served at once, each by one of
as many reused worker threads; further connections wait in the listen queue (``backlog``, capped by the OS's
``net.core.somaxconn``) and are served in turn. Model calls are serialised with a lock (one forward pass at a time).
"""

from __future__ import annotations

import io
import json
import logging
import queue
import socket
import sys
import threading
import time
import uuid
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, HTTPServer
from typing import Any

from reward.chat_text import ChatTextExtractor
from reward.config import ServerConfig
from reward.model import RewardModel

logger = logging.getLogger(__name__)

REWARD_PATH = "/get_reward"
HEALTH_PATH = "/health"
DISCARD_FACTOR = 16  # oversized bodies up to this multiple of the limit are read and dropped before the 413
STOP_POLL_SECONDS = 0.5  # how often a server waiting for a free worker checks for shutdown (serve_forever's default)


class RequestError(ValueError):
    """A request the server refuses, with the HTTP status to answer."""

    def __init__(self, status: HTTPStatus, message: str):
        super().__init__(message)
        self.status = status


def request_path(path: str) -> str:
    """``path`` without its query string and trailing slash."""
    return path.split("?", 1)[0].rstrip("/")


def declared_length(header: str | None) -> int:
    """The body length a ``Content-Length`` header declares (411 when it is missing or not an integer)."""
    try:
        return int(header or "")
    except ValueError:
        raise RequestError(HTTPStatus.LENGTH_REQUIRED, "send a Content-Length header with the JSON body.") from None


def parse_json(raw: bytes) -> Any:
    """The JSON value of a request body (400 when it is not UTF-8 JSON or exceeds json's limits)."""
    try:
        return json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise RequestError(HTTPStatus.BAD_REQUEST,
                           f"malformed JSON body ({err}); send {{\"query\": [text, ...]}}.") from None
    except (ValueError, RecursionError) as err:  # json's limits: integers over 4300 digits, deep nesting
        raise RequestError(HTTPStatus.BAD_REQUEST, f"JSON body not accepted ({type(err).__name__}); send "
                                                   "{\"query\": [text, ...]}.") from None


def string_list(value: Any, key: str, limits: ServerConfig) -> list[str]:
    """``value`` if it is a list of at most ``max_batch`` UTF-8 strings of at most ``max_chars`` each (else 400/413)."""
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise RequestError(HTTPStatus.BAD_REQUEST, f"`{key}` must be a list of strings.")
    if len(value) > limits.max_batch:
        raise RequestError(HTTPStatus.REQUEST_ENTITY_TOO_LARGE,
                           f"`{key}` has {len(value)} texts; at most {limits.max_batch} per request.")
    for i, text in enumerate(value):
        if len(text) > limits.max_chars:
            raise RequestError(HTTPStatus.REQUEST_ENTITY_TOO_LARGE,
                               f"`{key}[{i}]` has {len(text)} characters; at most {limits.max_chars}.")
        try:
            text.encode("utf-8")
        except UnicodeEncodeError:  # a lone surrogate escape ("\ud800") is valid JSON but not text
            raise RequestError(HTTPStatus.BAD_REQUEST, f"`{key}[{i}]` is not valid Unicode text (a lone "
                               "surrogate); send UTF-8 text.") from None
    return value


def queries_and_prompts(body: Any, limits: ServerConfig) -> tuple[list[str], list[str] | None]:
    """The checked ``query`` list of a request body, and its ``prompts`` list (None when absent)."""
    if not isinstance(body, dict):
        raise RequestError(HTTPStatus.BAD_REQUEST, "the body must be a JSON object with a `query` list.")
    if "query" not in body:
        raise RequestError(HTTPStatus.BAD_REQUEST, "missing `query`: send {\"query\": [text, ...]}.")
    queries = string_list(body["query"], "query", limits)
    if not queries:
        raise RequestError(HTTPStatus.BAD_REQUEST, "`query` is empty; send at least one text.")
    prompts = body.get("prompts")
    if prompts is not None:
        prompts = string_list(prompts, "prompts", limits)
        if len(prompts) != len(queries):
            raise RequestError(HTTPStatus.BAD_REQUEST,
                               f"{len(prompts)} prompts for {len(queries)} queries; send one prompt per query.")
    return queries, prompts


class RewardService:
    """The server's logic without HTTP: validate a request body, build texts, score them under a lock."""

    def __init__(self, reward_model: RewardModel, limits: ServerConfig, extractor: ChatTextExtractor | None = None):
        self.reward_model = reward_model
        self.limits = limits
        self.extractor = extractor
        self.lock = threading.Lock()

    def texts(self, body: Any) -> list[str]:
        """The reward model's input texts for a request body (see the module docstring)."""
        queries, prompts = queries_and_prompts(body, self.limits)
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

    def answer_post(self, path: str, raw: bytes) -> tuple[HTTPStatus, dict[str, Any]]:
        """Status and JSON reply to a POST of the body ``raw`` to ``path``; a refusal or a failure is a reply too."""
        try:
            if request_path(path) != REWARD_PATH:
                raise RequestError(HTTPStatus.NOT_FOUND, f"unknown path {path}; use POST {REWARD_PATH}.")
            return HTTPStatus.OK, self.rewards(parse_json(raw))
        except RequestError as err:
            return err.status, {"error": str(err)}
        except Exception:  # never let one request take the server down, nor show a client the server's internals
            error_id = uuid.uuid4().hex[:12]
            logger.exception("reward request failed (error id %s)", error_id)
            return HTTPStatus.INTERNAL_SERVER_ERROR, {
                "error": f"internal error while scoring (error id {error_id}); the server log has the details."}

    def health(self) -> dict[str, Any]:
        metadata = self.reward_model.metadata
        return {"status": "ok", "max_batch": self.limits.max_batch, "max_chars": self.limits.max_chars,
                "normalize": self.reward_model.normalize, "threshold": metadata.threshold,
                "higher_is_safer": metadata.higher_is_safer}


class _DeadlineReader(io.RawIOBase):
    """The reading side of a connection that raises ``TimeoutError`` once ``deadline`` (``time.monotonic()``) passes.

    A socket timeout bounds each read; a client sending one byte per read would reset it forever. Here every read may
    wait only until the deadline, which the handler sets once per request.
    """

    def __init__(self, connection: socket.socket, io_timeout: float):
        super().__init__()
        self.connection = connection
        self.io_timeout = io_timeout  # restored after each read: it bounds the writes of the reply
        self.deadline = time.monotonic() + io_timeout

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: memoryview) -> int:
        remaining = self.deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError("request deadline passed")
        self.connection.settimeout(remaining)
        try:
            return self.connection.recv_into(buffer)
        finally:
            self.connection.settimeout(self.io_timeout)


class RewardHandler(BaseHTTPRequestHandler):
    """HTTP for a :class:`RewardService`; :func:`make_handler` binds a subclass to one service."""

    protocol_version = "HTTP/1.1"
    server_version = "silr-reward/1"
    service: RewardService  # set by make_handler
    timeout: float  # ServerConfig.request_timeout, set by make_handler: bounds each write and each request's reads

    def setup(self) -> None:
        super().setup()
        self.rfile.close()  # http.server's reader, replaced by one that enforces the whole-request deadline
        self.reader = _DeadlineReader(self.connection, self.timeout)
        self.rfile = io.BufferedReader(self.reader)

    def handle_one_request(self) -> None:
        # The clock starts as the server waits for the request line, so an idle kept-alive connection expires too.
        self.reader.deadline = time.monotonic() + self.timeout
        super().handle_one_request()  # a late request line or header: http.server closes the connection

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
        if request_path(self.path) == HEALTH_PATH:
            self._reply(HTTPStatus.OK, self.service.health())
        else:
            self._error(HTTPStatus.NOT_FOUND, f"unknown path {self.path}; use POST {REWARD_PATH} or GET {HEALTH_PATH}.")

    def do_POST(self) -> None:  # noqa: N802
        try:
            raw = self._read_body()
        except RequestError as err:
            self.close_connection = True  # an unread body would be parsed as the next request
            self._error(err.status, str(err))
            return
        except TimeoutError:
            self.log_error("request body not received within %g s", self.timeout)
            self.close_connection = True
            self._error(HTTPStatus.REQUEST_TIMEOUT,
                        f"the request was not received within {self.timeout:g} s; send it in one go.")
            return
        self._reply(*self.service.answer_post(self.path, raw))

    def _read_body(self) -> bytes:
        length = declared_length(self.headers.get("Content-Length"))
        limit = self.service.limits.max_body_bytes
        if length < 0 or length > limit:
            if 0 < length <= DISCARD_FACTOR * limit:
                self._discard(length)  # read it, so the client is not reset while still sending
            raise RequestError(HTTPStatus.REQUEST_ENTITY_TOO_LARGE,
                               f"body of {length} bytes exceeds {limit}; send fewer or shorter texts.")
        return self.rfile.read(length)

    def _discard(self, length: int) -> None:
        while length > 0:
            chunk = self.rfile.read(min(length, 1 << 16))
            if not chunk:
                return
            length -= len(chunk)

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 (http.server's signature)
        logger.debug("%s " + format, self.address_string(), *args)


def make_handler(service: RewardService) -> type[RewardHandler]:
    """A request handler class bound to ``service``."""
    return type("RewardHandler", (RewardHandler,), {"service": service, "timeout": service.limits.request_timeout})


class RewardHTTPServer(HTTPServer):
    """An HTTP server with a listen ``backlog`` that serves at most ``max_connections`` connections at once.

    Each connection is handed to one of at most ``max_connections`` worker threads, started as needed and reused.
    While all are busy, the accept loop waits, so new connections queue in the listen backlog instead of each taking
    a thread.
    """

    def __init__(self, address: tuple[str, int], handler: type[BaseHTTPRequestHandler], limits: ServerConfig):
        self.request_queue_size = limits.backlog  # read by server_activate's listen()
        self.max_connections = limits.max_connections
        self.workers: list[threading.Thread] = []
        self._connections: queue.SimpleQueue = queue.SimpleQueue()
        self._busy = threading.Condition()
        self._in_flight = 0  # connections handed to the workers and not yet closed
        self._stopping = False
        super().__init__(address, handler)

    def process_request(self, request: socket.socket, client_address: Any) -> None:
        with self._busy:
            while self._in_flight >= self.max_connections:
                if self._stopping:
                    self.shutdown_request(request)
                    return
                self._busy.wait(STOP_POLL_SECONDS)
            if len(self.workers) == self._in_flight:  # every worker is busy: start one more
                worker = threading.Thread(target=self._work, name=f"reward-worker-{len(self.workers)}", daemon=True)
                worker.start()
                self.workers.append(worker)
            self._in_flight += 1
        self._connections.put((request, client_address))

    def _work(self) -> None:
        while (item := self._connections.get()) is not None:
            request, client_address = item
            try:
                self.finish_request(request, client_address)
            except Exception:
                self.handle_error(request, client_address)
            finally:
                self.shutdown_request(request)
                with self._busy:
                    self._in_flight -= 1
                    self._busy.notify()

    def handle_error(self, request: socket.socket, client_address: Any) -> None:
        """Log a failed connection (socketserver's default prints a traceback to stderr)."""
        if isinstance(sys.exc_info()[1], OSError):  # the client reset or left: routine for a server
            logger.debug("connection from %s dropped", client_address, exc_info=True)
        else:
            logger.exception("connection from %s failed", client_address)

    def shutdown(self) -> None:
        with self._busy:
            self._stopping = True
            self._busy.notify_all()
        super().shutdown()

    def server_close(self) -> None:
        super().server_close()
        for _ in self.workers:
            self._connections.put(None)  # each worker exits after the connection it is serving


def make_server(
    reward_model: RewardModel, *, host: str = "127.0.0.1", port: int = 5000, limits: ServerConfig | None = None,
    extractor: ChatTextExtractor | None = None,
) -> RewardHTTPServer:
    """A bound, not yet running server (call ``serve_forever()``; port 0 picks a free port, see ``server_address``)."""
    limits = limits or ServerConfig()
    return RewardHTTPServer((host, port), make_handler(RewardService(reward_model, limits, extractor)), limits)
