"""Canonical events -> Amplitude's requests: the events, /groupidentify forms, /usermap forms."""

from __future__ import annotations

from urllib.parse import quote_plus

from gateway.adapter import Alias, BatchLimits, OutboundRequest, pack_json_batches

from .encoder import amplitude_event
from .fields import encode_json
from .settings import Settings, batch_limits, usermap_url

MAX_FORM_ITEMS = {"identification": 1024, "mapping": 2000}  # /groupidentify, /usermap
MAX_FORM_BYTES = 1_000_000


def skip_reason(event, settings: Settings) -> str | None:
    if isinstance(event, Alias) and not settings.use_usermap:
        return "alias_unsupported"
    return None


def build_requests(events: list, settings: Settings) -> list[OutboundRequest]:
    """The events request(s), then /groupidentify for group traits, then /usermap for aliases.
    A group appears in both an events request and a /groupidentify request."""
    encoded, indexes, groups, mappings = [], [], [], []
    for index, event in enumerate(events):
        if isinstance(event, Alias):
            mapping = _usermap_item(event)
            if settings.use_usermap and mapping is not None:
                mappings.append((index, mapping))
            continue
        body, group = amplitude_event(event, settings)
        encoded.append(encode_json(body))
        indexes.append(index)
        if group is not None:
            groups.append((index, group))
    requests = _event_requests(encoded, indexes, settings)
    base = settings.base_url.rstrip("/")
    requests += _form_requests(base + "/groupidentify", "identification", groups, settings)
    requests += _form_requests(usermap_url(settings), "mapping", mappings, settings)
    return requests


def _usermap_item(event) -> dict | None:
    """alias previousId -> userId as Amplitude's mapping of a user_id to a global_user_id."""
    if not event.previous_id or not event.user_id:
        return None
    return {"user_id": event.previous_id, "global_user_id": event.user_id}


def _event_requests(encoded: list[bytes], indexes: list[int], settings: Settings) -> list[OutboundRequest]:
    path = "/2/httpapi" if settings.endpoint == "httpapi" else "/batch"
    url = settings.base_url.rstrip("/") + path
    head = b'{"api_key":' + encode_json(settings.api_key) + b',"events":['
    tail = b'],"options":{"min_id_length":' + str(settings.min_id_length).encode() + b"}}"
    headers = (("Content-Type", "application/json"),)
    return [
        OutboundRequest(url, head + b",".join(encoded[i] for i in part) + tail,
                        tuple(indexes[i] for i in part), headers=headers)
        for part in pack_json_batches(encoded, batch_limits(settings), envelope=len(head) + len(tail))
    ]


def _form_requests(url: str, field: str, items: list[tuple[int, dict]], settings: Settings) -> list[OutboundRequest]:
    """Form POSTs of `api_key` + `field`=<JSON array>, within the endpoint's limits."""
    if not items:
        return []
    prefix = f"api_key={quote_plus(settings.api_key)}&{field}=".encode()
    quoted = [quote_plus(encode_json(item)).encode() for _, item in items]
    most = MAX_FORM_ITEMS[field]  # packing counts 1 byte between items; "%2C" takes 3
    limits = BatchLimits(max_events=most, max_bytes=MAX_FORM_BYTES - 2 * most)
    headers = (("Content-Type", "application/x-www-form-urlencoded"),)
    requests = []
    for part in pack_json_batches(quoted, limits, envelope=len(prefix) + 6):
        body = prefix + b"%5B" + b"%2C".join(quoted[i] for i in part) + b"%5D"
        requests.append(OutboundRequest(url, body, tuple(items[i][0] for i in part), headers=headers))
    return requests
