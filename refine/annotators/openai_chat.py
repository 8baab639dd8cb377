"""An LLM behind any OpenAI-compatible chat-completions server (``kind: openai``): vLLM, OpenAI, llama.cpp, ...

Each text is sent as ``POST {base_url}/chat/completions`` with the few-shot messages of ``refine.annotators.prompts``,
``max_tokens=1``, ``temperature=0``, ``logprobs=true`` and ``top_logprobs=5``. The score is

    score = logsumexp(logprob of "yes" tokens) - logsumexp(logprob of "no" tokens)

over the top-5 alternatives of the first reply token, matching a token when ``token.strip().lower()`` is ``yes`` or
``no``. An answer missing from the top 5 gets the floor ``min(top-5 logprobs) - 1`` (it is less likely than every
listed token); if neither answer is listed the score is 0 (undecided) and a warning counts such replies. A server
that returns no logprobs, or logprobs that are not all numbers (``"logprob": null``), is read from the reply text: +1
if it starts with the word yes, -1 for no (case-insensitive); any other reply is retried and then raises.

Requests run ``max_concurrency`` at a time and retry 429, 5xx, connection errors and timeouts up to ``max_retries``
times with exponential backoff and jitter, honouring ``Retry-After``. Another 4xx (bad key, unknown model) fails at
once. The API key is read from the environment variable named by ``api_key_env`` at each request (none: no
Authorization header) and never logged, stored on the scorer, written, or put into an error message. A user and
password in ``base_url`` (``http://user:pass@host/v1``, sent as basic auth) are shown as ``***@`` in every message.
"""

from __future__ import annotations

import base64
import email.utils
import logging
import math
import os
import random
import re
import threading
import time
import urllib.parse
from concurrent.futures import ThreadPoolExecutor, as_completed

import numpy as np
import requests

from refine.annotators.prompts import build_messages
from refine.config import AnnotatorConfig
from refine.redact import redact_credentials

logger = logging.getLogger(__name__)

BACKOFF_BASE_S = 1.0  # first retry waits 1-2 s, then 2-3 s, 4-5 s, ... (exponential, plus up to 1 s of jitter)
BACKOFF_MAX_S = 60.0  # cap of one wait, Retry-After included
CHARS_PER_TOKEN = 4  # no tokenizer on the client: texts are cut at max_length * 4 characters (~max_length tokens)
TOP_LOGPROBS = 5
_ANSWER = re.compile(r"\s*(yes|no)\b", re.IGNORECASE)
_jitter = random.Random()


class AnnotatorRequestError(ConnectionError):
    """The annotation server could not be reached or kept failing after every retry (an OSError, as the CLI expects)."""


def _top_logprobs(logprobs) -> list[tuple[str, float]]:
    """(token, logprob) alternatives of the first reply token, in the chat format or the legacy completions one.

    Empty when there are none, or when any of them is not a token with a finite number (``"logprob": null``, a
    missing key): such a reply is read from its text instead.
    """
    if not isinstance(logprobs, dict):
        return []
    content = logprobs.get("content")
    if isinstance(content, list) and content:
        first = content[0] if isinstance(content[0], dict) else {}
        entries = first.get("top_logprobs") or []
        pairs = [(e.get("token"), e.get("logprob")) if isinstance(e, dict) else (None, None) for e in entries]
    else:
        legacy = logprobs.get("top_logprobs")
        pairs = list(legacy[0].items()) if isinstance(legacy, list) and legacy and isinstance(legacy[0], dict) else []
    if not all(isinstance(token, str) and _is_number(lp) for token, lp in pairs):
        return []
    return [(token, float(lp)) for token, lp in pairs]


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _logsumexp(values: list[float]) -> float:
    top = max(values)
    return top + math.log(sum(math.exp(v - top) for v in values))


def answer_score(body: dict) -> float | None:
    """The score of one chat-completions response body (see the module docstring), or None if unreadable."""
    choice = body["choices"][0]
    alternatives = _top_logprobs(choice.get("logprobs"))
    if alternatives:
        yes = [lp for token, lp in alternatives if token.strip().lower() == "yes"]
        no = [lp for token, lp in alternatives if token.strip().lower() == "no"]
        if not yes and not no:
            return 0.0
        floor = min(lp for _, lp in alternatives) - 1.0
        return _logsumexp(yes or [floor]) - _logsumexp(no or [floor])
    match = _ANSWER.match((choice.get("message") or {}).get("content") or "")
    if match is None:
        return None
    return 1.0 if match.group(1).lower() == "yes" else -1.0


def _is_undecided(body: dict) -> bool:
    alternatives = _top_logprobs(body["choices"][0].get("logprobs"))
    return bool(alternatives) and not any(token.strip().lower() in ("yes", "no") for token, _ in alternatives)


def _retry_after_seconds(value: str) -> float | None:
    """Seconds in a Retry-After header (a number, or an HTTP date), or None if unreadable."""
    try:
        return float(value)
    except ValueError:
        pass
    try:
        return email.utils.parsedate_to_datetime(value).timestamp() - time.time()
    except (TypeError, ValueError, OverflowError):
        return None


def retry_delay(attempt: int, retry_after: str | None) -> float:
    """Seconds to wait before retry ``attempt + 1``: the server's Retry-After if given, else exponential + jitter."""
    seconds = _retry_after_seconds(retry_after) if retry_after else None
    if seconds is None:
        seconds = BACKOFF_BASE_S * 2**attempt + _jitter.uniform(0, BACKOFF_BASE_S)
    return min(max(seconds, 0.0), BACKOFF_MAX_S)


def _url_secrets(url: str) -> list[str]:
    """The password in ``url`` as written and unquoted, and the basic-auth token requests builds from it."""
    parts = urllib.parse.urlsplit(url)
    if parts.password is None:
        return []
    user, password = urllib.parse.unquote(parts.username or ""), urllib.parse.unquote(parts.password)
    token = base64.b64encode(f"{user}:{password}".encode("latin1", "replace")).decode()
    return sorted({parts.password, password, token} - {""}, key=len, reverse=True)


_FIXES = {
    401: "check the API key in ${env} (the variable named by annotator.api_key_env)",
    403: "check the API key's permissions for this model",
    404: "check annotator.base_url (it usually ends in /v1) and annotator.model_name_or_path",
}


# Requests that can never be sent as configured: not retried.
UNSENDABLE = (requests.exceptions.InvalidHeader, requests.exceptions.InvalidURL, requests.exceptions.MissingSchema,
              requests.exceptions.InvalidSchema)


class OpenAIChatScorer:
    """Scores texts through a chat-completions server; call it on a list of texts.

    Args:
        config: ``base_url``, ``model_name_or_path``, ``api_key_env``, prompt, concurrency and retry settings.
    """

    def __init__(self, config: AnnotatorConfig):
        self.url = config.base_url.rstrip("/") + "/chat/completions"
        self.shown_url = redact_credentials(self.url)  # the URL in messages: no user:password
        self._url_secrets = _url_secrets(self.url)
        self.model = config.model_name_or_path
        self.api_key_env = config.api_key_env
        self.instruction, self.few_shot = config.instruction, config.few_shot
        self.max_chars = config.max_length * CHARS_PER_TOKEN
        self.max_concurrency, self.max_retries = config.max_concurrency, config.max_retries
        self.timeout = config.request_timeout
        self._local = threading.local()
        self._undecided = 0
        self._lock = threading.Lock()
        self._stop = threading.Event()  # set by the first failed text: the others are not sent or retried

    def __repr__(self) -> str:
        return f"OpenAIChatScorer(url={self.shown_url!r}, model={self.model!r}, api_key_env={self.api_key_env!r})"

    def _key(self) -> str | None:
        # Stripped: a key read from a CRLF .env file ends in "\r", and requests would reject (and print) the header.
        return (os.environ.get(self.api_key_env) or "").strip() or None

    def _session(self) -> requests.Session:
        if getattr(self._local, "session", None) is None:
            self._local.session = requests.Session()
        return self._local.session

    def _detail(self, response: requests.Response) -> str:
        try:
            detail = str(response.json().get("error", {}).get("message", ""))
        except (ValueError, AttributeError):
            detail = response.text
        key = self._key()
        detail = detail.replace(key, "***") if key else detail  # redacted before it is cut: no half key survives
        for secret in self._url_secrets:  # a server may echo the password, or the basic-auth header, on its own
            detail = detail.replace(secret, "***")
        detail = redact_credentials(detail)
        return " ".join(detail.split())[:200]

    def _body(self, response: requests.Response) -> dict:
        try:
            body = response.json()
            body["choices"][0]["message"]
        except (ValueError, KeyError, IndexError, TypeError) as err:
            raise ValueError(
                f"{self.shown_url} answered HTTP 200 with a body that is not a chat completion "
                f"({type(err).__name__}); check annotator.base_url points at an OpenAI-compatible server (usually "
                "ending in /v1)."
            ) from err
        return body

    def score_text(self, text: str) -> float:
        """Score one text, retrying transient failures.

        Raises:
            ValueError: On a 4xx other than 429, or a reply that is neither yes nor no after every retry.
            AnnotatorRequestError: If the server keeps failing (429, 5xx, connection error, timeout).
        """
        messages = build_messages(text[: self.max_chars], instruction=self.instruction, few_shot=self.few_shot)
        payload = {
            "model": self.model, "messages": messages, "max_tokens": 1, "temperature": 0,
            "logprobs": True, "top_logprobs": TOP_LOGPROBS,
        }
        last, unreadable = "", False
        for attempt in range(self.max_retries + 1):
            if self._stop.is_set():
                return math.nan  # another text failed; this result is discarded
            key, retry_after = self._key(), None
            headers = {"Authorization": f"Bearer {key}"} if key else {}
            try:
                response = self._session().post(self.url, json=payload, headers=headers, timeout=self.timeout)
            except (requests.ConnectionError, requests.Timeout, requests.exceptions.ChunkedEncodingError,
                    requests.exceptions.ContentDecodingError) as err:  # transient: retried
                last, unreadable = type(err).__name__, False
            except UNSENDABLE as err:  # its text may quote the Authorization header, key included
                raise ValueError(f"the request to {self.shown_url} could not be sent ({type(err).__name__}); check "
                                 f"annotator.base_url and the key in ${self.api_key_env}.") from None
            else:
                status = response.status_code
                if status == 200:
                    body = self._body(response)
                    score = answer_score(body)
                    if score is not None:
                        if _is_undecided(body):
                            with self._lock:
                                self._undecided += 1
                        return score
                    reply = (body["choices"][0].get("message") or {}).get("content")
                    last, unreadable = f"reply {reply!r:.40} is neither yes nor no", True
                elif status == 429 or status >= 500:
                    last, unreadable, retry_after = f"HTTP {status}", False, response.headers.get("Retry-After")
                else:
                    fix = _FIXES.get(status, "check annotator.model_name_or_path and the server's request format")
                    fix = fix.replace("{env}", self.api_key_env)
                    raise ValueError(f"{self.shown_url} answered HTTP {status} ({self._detail(response)}); {fix}.")
            if attempt < self.max_retries:
                delay = retry_delay(attempt, retry_after)
                logger.info("chat request failed (%s); retry %d/%d in %.1fs", last, attempt + 1, self.max_retries, delay)
                time.sleep(delay)
        if unreadable:
            raise ValueError(
                f"{self.shown_url}: the model's {last} after {self.max_retries} retries; make annotator.instruction "
                "ask for Yes or No, or use a server that returns logprobs."
            )
        raise AnnotatorRequestError(
            f"{self.shown_url} kept failing after {self.max_retries} retries (last: {last}); check the server is up, "
            "or raise annotator.max_retries / annotator.request_timeout."
        )

    def _score_or_stop(self, text: str) -> float:
        try:
            return self.score_text(text)
        except BaseException:
            self._stop.set()
            raise

    def __call__(self, texts: list[str], advance=lambda k: None) -> np.ndarray:
        """Scores of ``texts``, shape ``(n,)``, float64, at most ``max_concurrency`` requests in flight."""
        scores = np.empty(len(texts), dtype=np.float64)
        self._undecided = 0
        self._stop.clear()
        pool = ThreadPoolExecutor(max_workers=max(1, min(self.max_concurrency, len(texts))))
        try:
            futures = {pool.submit(self._score_or_stop, text): i for i, text in enumerate(texts)}
            for future in as_completed(futures):
                scores[futures[future]] = future.result()
                advance(1)
        finally:
            pool.shutdown(wait=True, cancel_futures=True)
        if self._undecided:
            logger.warning(
                "%d of %d replies listed neither yes nor no among the top %d tokens; scored 0 (undecided).",
                self._undecided, len(texts), TOP_LOGPROBS,
            )
        return scores
