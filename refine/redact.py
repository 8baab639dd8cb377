"""Credentials in URLs (``http://user:password@host/v1``) are never printed, logged or written by silr.

A run folder is data that gets shared: ``config.yaml``, ``stage.json`` and every error line show such a URL as
``http://***@host/v1``. The requests themselves still use the URL as given (requests sends its user and password as
HTTP basic auth).
"""

from __future__ import annotations

import re
from typing import Any

# scheme://userinfo@ : the userinfo (user, or user:password) runs up to the last "@" before any "/", "?" or "#"
# (as urllib reads it), so a password with a raw "@" in it is hidden whole.
_USERINFO = re.compile(r"(?P<scheme>\b[a-zA-Z][a-zA-Z0-9+.\-]*://)[^/?#\s]*@")
REDACTED = "***"


def redact_credentials(text: str) -> str:
    """``text`` with the user and password of every URL in it replaced by ``***``."""
    return _USERINFO.sub(lambda m: f"{m.group('scheme')}{REDACTED}@", text)


def redact_config(data: Any) -> Any:
    """A copy of a config mapping (nested dicts and lists) whose string values carry no URL credentials."""
    if isinstance(data, dict):
        return {key: redact_config(value) for key, value in data.items()}
    if isinstance(data, (list, tuple)):
        return type(data)(redact_config(value) for value in data)
    return redact_credentials(data) if isinstance(data, str) else data
