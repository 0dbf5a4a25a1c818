"""What the dashboard never shows: values under secret-looking keys, passwords in URLs, and the
queue's database URL.

Masking happens when a page is rendered; the stored job is unchanged, and the REST API (behind
the same dependencies as the dashboard) returns it whole.
"""

import re
from typing import Any

MASK = "••••••"

SECRET_KEY = re.compile(
    r"pass(word|wd|phrase)?|secret|token|authori[sz]ation|api[-_]?key|apikey|credential"
    r"|private[-_]?key|cookie|session[-_]?id|dsn|database[-_]?url",
    re.IGNORECASE,
)
"""A key whose value is masked wherever it appears in a payload, result or progress."""

_URL_PASSWORD = re.compile(r"(?P<head>[a-z][a-z0-9+.-]*://[^\s:/@]*:)[^\s@/]+@", re.IGNORECASE)


def redact(value: Any) -> Any:
    """``value`` with every value under a secret-looking key replaced by ``MASK``, at any depth,
    and passwords inside URL strings masked."""
    if isinstance(value, dict):
        return {
            key: MASK if isinstance(key, str) and SECRET_KEY.search(key) else redact(item)
            for key, item in value.items()
        }
    if isinstance(value, list | tuple):
        return [redact(item) for item in value]
    if isinstance(value, str):
        return redact_text(value)
    return value


def redact_text(text: str, *, hidden: tuple[str, ...] = ()) -> str:
    """``text`` with passwords in URLs masked and each string of ``hidden`` (such as the
    database URL) replaced."""
    for secret in hidden:
        if secret:
            text = text.replace(secret, "[database url]")
    return _URL_PASSWORD.sub(lambda m: f"{m['head']}{MASK}@", text)
