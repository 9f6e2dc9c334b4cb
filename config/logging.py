"""Logging set-up: one format, and a filter that redacts secrets from every record."""

from __future__ import annotations

import logging
import os
import re

from config.constants import ENV_POLYGON_API_KEY

_URL_PASSWORD = re.compile(r"(\w+://[^:/@\s]+:)[^@\s]+@")
_KEY_PARAM = re.compile(
    r"((?:apiKey|api_key|token|params)[\"']?\s*[=:]\s*[\"']?)[A-Za-z0-9_\-]{8,}"
)


def redact(text: str) -> str:
    """Remove DSN passwords, API keys and tokens from a string."""
    text = _URL_PASSWORD.sub(r"\1***@", text)
    text = _KEY_PARAM.sub(r"\1***", text)
    key = os.environ.get(ENV_POLYGON_API_KEY)
    if key and len(key) >= 4:
        text = text.replace(key, "***")
    return text


class RedactingFilter(logging.Filter):
    """Rewrite each record's message with secrets removed."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        cleaned = redact(message)
        if cleaned != message:
            record.msg, record.args = cleaned, None
        return True


def setup_logging(level: str | int | None = None) -> None:
    """Configure the root logger once (level from TICKSTOCK_LOG_LEVEL, default WARNING)."""
    root = logging.getLogger()
    if any(isinstance(f, RedactingFilter) for h in root.handlers for f in h.filters):
        return
    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    handler.addFilter(RedactingFilter())
    root.addHandler(handler)
    root.setLevel(level or os.environ.get("TICKSTOCK_LOG_LEVEL", "WARNING"))
