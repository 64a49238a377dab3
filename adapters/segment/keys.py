"""The write key of a request: the user of `Authorization: Basic`, else the body's `writeKey`."""

from __future__ import annotations

import base64
from typing import Any

from gateway.adapter import InboundRequest


def _key(request: InboundRequest, envelope: Any) -> str | None:
    key = _basic_user(request.headers.get("authorization", ""))
    if key is None and isinstance(envelope.writeKey, str) and envelope.writeKey:
        key = envelope.writeKey
    return key


_users: dict[str, str | None] = {}  # Authorization header -> key: SDKs send one header again and again


def _basic_user(header: str) -> str | None:
    if header in _users:
        return _users[header]
    if len(_users) >= 256:
        _users.clear()
    user = _users[header] = _decode_basic(header)
    return user


def _decode_basic(header: str) -> str | None:
    scheme, _, token = header.strip().partition(" ")
    if scheme.lower() != "basic" or not token:
        return None
    token = token.strip()
    try:
        text = base64.b64decode(token + "=" * (-len(token) % 4), validate=True).decode("utf-8")
    except ValueError:  # binascii.Error, UnicodeDecodeError, non-ASCII text
        return None
    return text.partition(":")[0] or None
