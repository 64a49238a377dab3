"""An emulator of Amplitude's ingestion APIs: /2/httpapi, /batch, /identify, /groupidentify, /usermap.

Like Amplitude (HTTP V2 docs, vendor-apis.md section 3): the key is the body's `api_key` (400
`Invalid API key: ...` otherwise); a request over `max_events` or `max_request_bytes` gets 413;
each event needs `event_type` and a `user_id` or `device_id` of at least `options.min_id_length`
characters (default 5; `$groupidentify` needs neither), and an integer `time` when it has one. A
request with invalid events is refused whole with a 400 naming them by index. Accepted events are
kept in ``events`` (as sent, duplicates included) and deduplicated on (device_id, insert_id) in
``unique``; /identify and /groupidentify items in ``identifies`` / ``group_identifies``,
/usermap mappings in ``mappings``; every request, with its status, in ``attempts``.

Scripting, besides the base's ``fail_next``/``always``/``set_delay``:
- ``fail_next_on(path, n, status, body)``: the next ``n`` requests to ``path`` only;
- ``reject(insert_ids, field, kind)``: a 400 naming the events with those insert_ids
  (`events_with_invalid_fields`, or `_missing_fields` / `_invalid_id_lengths`, or
  `silenced_events`) while any of them is in a request;
- ``throttle(users, devices, times, daily_quota, retry_after)``: the next ``times`` requests
  holding events of those users/devices get Amplitude's 429 with `throttled_users`,
  `throttled_devices` and `throttled_events` (and `exceeded_daily_quota_*` with
  ``daily_quota``); nothing of such a request is ingested.

``count_only=True`` is the bench's fast mode: no records, only counts and distinct insert_ids.
Run as a process: ``python -m tests.emulators.amplitude_api --port P --api-key K [--count-only]``
(prints its URL; ``GET /stats`` answers ``{"events": n, "unique": u, ...}``).
"""

from __future__ import annotations

import argparse
import collections
import time
from typing import Any
from urllib.parse import parse_qsl

import msgspec
from aiohttp import web

from tests.emulators.base import Emulator, Scripted, json_response, serve_forever

MAX_EVENTS = 2000  # per request, /2/httpapi and /batch
MAX_BYTES = {"/2/httpapi": 1_000_000, "/batch": 20_000_000}
DEFAULT_MIN_ID_LENGTH = 5
_MAPS = {
    "invalid": "events_with_invalid_fields",
    "missing": "events_with_missing_fields",
    "id_length": "events_with_invalid_id_lengths",
}


class _CountEvent(msgspec.Struct):
    insert_id: str = ""
    device_id: str = ""


class _CountBody(msgspec.Struct):
    api_key: str = ""
    events: list[_CountEvent] = []


_count_body = msgspec.json.Decoder(_CountBody)
_decode_any = msgspec.json.Decoder()


def _reply(status: int, error: str, **extra: Any) -> web.Response:
    return json_response(status, {"code": status, "error": error, **extra})


class AmplitudeEmulator(Emulator):
    def __init__(
        self,
        api_key: str = "test-api-key",
        port: int = 0,
        count_only: bool = False,
        max_events: int = MAX_EVENTS,
        max_request_bytes: int | None = None,  # None: Amplitude's per endpoint
    ):
        super().__init__(port)
        self.api_key = api_key
        self.count_only = count_only
        self.keep_attempts = not count_only
        self.max_events = max_events
        self.max_request_bytes = max_request_bytes
        self.events: list[dict[str, Any]] = []
        self.requests: list[tuple[str, Any]] = []  # (path, parsed body) of accepted requests
        self.identifies: list[dict[str, Any]] = []
        self.group_identifies: list[dict[str, Any]] = []
        self.mappings: list[dict[str, Any]] = []
        self.event_count = 0
        self.request_count = 0
        self._keys: set[tuple[str, str]] = set()
        self._rejects: dict[str, str] = {}  # insert_id -> kind
        self._reject_field = "event_type"
        self._throttles: list[dict[str, Any]] = []
        self._path_script: dict[str, collections.deque[Scripted]] = collections.defaultdict(collections.deque)

    # -- routes and records ---------------------------------------------------------------

    def routes(self) -> list[web.RouteDef]:
        return [
            web.post("/2/httpapi", self._events),
            web.post("/batch", self._events),
            web.post("/identify", self._form),
            web.post("/groupidentify", self._form),
            web.post("/usermap", self._form),
        ]

    def counters(self) -> dict[str, int]:
        return {
            "events": self.event_count,
            "unique": len(self._keys),
            "requests": self.request_count,
            "attempts": self.attempt_count,
            "identifies": len(self.identifies),
            "group_identifies": len(self.group_identifies),
            "mappings": len(self.mappings),
        }

    def _clear_records(self):
        self.events.clear()
        self.requests.clear()
        self.identifies.clear()
        self.group_identifies.clear()
        self.mappings.clear()
        self._keys.clear()
        self.event_count = self.request_count = 0

    @property
    def insert_ids(self) -> set[str]:
        """Distinct insert_ids accepted so far (both modes)."""
        return {insert_id for _, insert_id in self._keys}

    def wait_for_events(self, n: int, timeout: float = 10.0) -> bool:
        """Block until at least ``n`` events were accepted (duplicates included)."""
        return self.wait_until(lambda: self.event_count >= n, timeout)

    def wait_for_unique(self, n: int, timeout: float = 10.0) -> bool:
        """Block until at least ``n`` distinct (device_id, insert_id) were accepted."""
        return self.wait_until(lambda: len(self._keys) >= n, timeout)

    # -- scripting ------------------------------------------------------------------------

    def fail_next_on(self, path: str, n: int = 1, status: int = 500, body: Any = None):
        payload = msgspec.json.encode(body if body is not None else {"code": status, "error": f"scripted {status}"})
        with self._lock:
            self._path_script[path].extend([Scripted(status, {}, payload)] * n)

    def reject(self, insert_ids, field: str = "event_type", kind: str = "invalid"):
        """A 400 naming these events (kind: invalid, missing, id_length or silenced)."""
        with self._lock:
            self._reject_field = field
            self._rejects.update({insert_id: kind for insert_id in insert_ids})

    def throttle(self, users=(), devices=(), times: int = 1, daily_quota: bool = False, retry_after: str | None = None):
        with self._lock:
            self._throttles.append({
                "users": set(users), "devices": set(devices), "times": times,
                "daily_quota": daily_quota, "retry_after": retry_after,
            })

    def reset(self):
        super().reset()
        with self._lock:
            self._rejects.clear()
            self._throttles.clear()
            self._path_script.clear()

    async def _scripted_for(self, path: str) -> web.Response | None:
        with self._lock:
            queue = self._path_script.get(path)
            step = queue.popleft() if queue else None
        if step is not None:
            return web.Response(status=step.status, body=step.body, content_type="application/json")
        return await self.scripted()

    # -- /2/httpapi and /batch ------------------------------------------------------------

    async def _events(self, request: web.Request) -> web.Response:
        raw = await request.read()
        answer, accept = self._judge_events(request.path, raw)
        if answer is None:
            answer = await self._scripted_for(request.path)
            if answer is not None:
                accept = None
        if answer is None:
            answer, accept = self._accept_events(request.path, raw)
        self.record(request, raw, answer.status, accept)
        return answer

    def _judge_events(self, path: str, raw: bytes):
        """Amplitude's refusals that come before any script: body, key, size."""
        if not raw:
            return _reply(400, "Missing request body"), None
        if self.count_only:
            try:
                body = _count_body.decode(raw)
            except msgspec.DecodeError:
                return _reply(400, "Invalid JSON request body"), None
            if body.api_key != self.api_key:
                return _reply(400, f"Invalid API key: {body.api_key}"), None
            return None, None
        try:
            body = _decode_any.decode(raw)
        except msgspec.DecodeError:
            return _reply(400, "Invalid JSON request body"), None
        if not isinstance(body, dict) or not body.get("api_key"):
            return _reply(400, "Request missing required field", missing_field="api_key"), None
        if body["api_key"] != self.api_key:
            return _reply(400, f"Invalid API key: {body['api_key']}"), None
        events = body.get("events")
        if not isinstance(events, list):
            return _reply(400, "Request missing required field", missing_field="events"), None
        limit = self.max_request_bytes or MAX_BYTES[path]
        if len(events) > self.max_events or len(raw) > limit:
            return _reply(413, "Payload too large"), None
        return None, None

    def _accept_events(self, path: str, raw: bytes):
        if self.count_only:
            return self._accept_counts(raw)
        body = _decode_any.decode(raw)
        events = body["events"]
        invalid = self._validate(events, body.get("options"))
        if invalid:
            return json_response(400, invalid), None
        throttled = self._throttled(events)
        if throttled is not None:
            return throttled, None

        def accept():
            self.requests.append((path, body))
            self.request_count += 1
            for event in events:
                self.events.append(event)
                self.event_count += 1
                self._keys.add((event.get("device_id") or "", event.get("insert_id") or ""))

        return self._ok(len(events), len(raw)), accept

    def _accept_counts(self, raw: bytes):
        events = _count_body.decode(raw).events

        def accept():
            self.request_count += 1
            self.event_count += len(events)
            self._keys.update((event.device_id, event.insert_id) for event in events)

        return self._ok(len(events), len(raw)), accept

    @staticmethod
    def _ok(n: int, size: int) -> web.Response:
        return json_response(200, {
            "code": 200, "events_ingested": n, "payload_size_bytes": size,
            "server_upload_time": time.time_ns() // 1_000_000,
        })

    def _validate(self, events: list, options: Any) -> dict | None:
        """Amplitude's event rules, then the scripted rejects: a 400 body naming events."""
        min_length = DEFAULT_MIN_ID_LENGTH
        if isinstance(options, dict) and type(options.get("min_id_length")) is int:
            min_length = options["min_id_length"]
        maps: dict[str, dict[str, list[int]]] = {}
        silenced: list[int] = []
        for index, event in enumerate(events):
            problem = self._problem(event, min_length)
            if problem is None and isinstance(event, dict):
                kind = self._rejects.get(event.get("insert_id", ""))
                if kind == "silenced":
                    silenced.append(index)
                elif kind is not None:
                    problem = (_MAPS[kind], self._reject_field)
            if problem is not None:
                maps.setdefault(problem[0], {}).setdefault(problem[1], []).append(index)
        if not maps and not silenced:
            return None
        body: dict[str, Any] = {"code": 400, "error": "Invalid field values on some events", **maps}
        if silenced:
            body.update(error="Events silenced for device_id", silenced_events=silenced, eps_threshold=100)
        return body

    @staticmethod
    def _problem(event: Any, min_length: int) -> tuple[str, str] | None:
        if not isinstance(event, dict):
            return _MAPS["invalid"], "event"
        if not isinstance(event.get("event_type"), str) or not event["event_type"]:
            return _MAPS["missing"], "event_type"
        if "time" in event and type(event["time"]) is not int:
            return _MAPS["invalid"], "time"
        if event["event_type"] == "$groupidentify":
            return None
        ids = {name: event.get(name) for name in ("user_id", "device_id")}
        for name, value in ids.items():
            if value is not None and not isinstance(value, str):
                return _MAPS["invalid"], name
        long_enough = [name for name, value in ids.items() if value and len(value) >= min_length]
        if long_enough:
            return None
        short = [name for name, value in ids.items() if value]
        return (_MAPS["id_length"], short[0]) if short else (_MAPS["missing"], "user_id")

    def _throttled(self, events: list) -> web.Response | None:
        with self._lock:
            for rule in self._throttles:
                if rule["times"] <= 0:
                    continue
                hit = [
                    i for i, event in enumerate(events)
                    if event.get("user_id") in rule["users"] or event.get("device_id") in rule["devices"]
                ]
                if not hit:
                    continue
                rule["times"] -= 1
                return self._throttle_reply(events, hit, rule)
        return None

    @staticmethod
    def _throttle_reply(events: list, hit: list[int], rule: dict) -> web.Response:
        users = {events[i]["user_id"]: 31 for i in hit if events[i].get("user_id") in rule["users"]}
        devices = {events[i]["device_id"]: 31 for i in hit if events[i].get("device_id") in rule["devices"]}
        body: dict[str, Any] = {
            "code": 429, "error": "Too many requests for some devices and users", "eps_threshold": 30,
            "throttled_devices": devices, "throttled_users": users, "throttled_events": hit,
        }
        if rule["daily_quota"]:
            body["exceeded_daily_quota_users"] = {user: 500_001 for user in users}
            body["exceeded_daily_quota_devices"] = {device: 500_001 for device in devices}
        headers = {"Retry-After": rule["retry_after"]} if rule["retry_after"] else None
        return json_response(429, body, headers)

    # -- /identify, /groupidentify, /usermap ---------------------------------------------

    async def _form(self, request: web.Request) -> web.Response:
        raw = await request.read()
        field = "mapping" if request.path == "/usermap" else "identification"
        answer, items = self._judge_form(raw, field)
        if answer is None:
            answer = await self._scripted_for(request.path)
        if answer is not None:
            self.record(request, raw, answer.status)
            return answer
        target = {"/identify": self.identifies, "/groupidentify": self.group_identifies}.get(request.path, self.mappings)

        def accept():
            target.extend(items)
            self.request_count += 1

        self.record(request, raw, 200, accept)
        return web.Response(status=200, text="success")

    def _judge_form(self, raw: bytes, field: str) -> tuple[web.Response | None, list]:
        try:
            fields = dict(parse_qsl(raw.decode("utf-8"), keep_blank_values=True))
        except (UnicodeDecodeError, ValueError):
            return _reply(400, "Invalid request body"), []
        if fields.get("api_key") != self.api_key:
            return _reply(400, f"Invalid API key: {fields.get('api_key')}"), []
        try:
            found = _decode_any.decode(fields.get(field, ""))
        except msgspec.DecodeError:
            return _reply(400, f"missing or invalid {field}"), []
        items = found if isinstance(found, list) else [found]
        if not items or not all(isinstance(item, dict) for item in items):
            return _reply(400, f"missing or invalid {field}"), []
        if field == "identification" and any(
            "group_type" not in item and not (item.get("user_id") or item.get("device_id")) for item in items
        ):
            return _reply(400, "missing user_id or device_id"), []
        return None, items


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--api-key", default="test-api-key")
    parser.add_argument("--count-only", action="store_true", help="count events, keep none")
    args = parser.parse_args(argv)
    serve_forever(AmplitudeEmulator(args.api_key, args.port, count_only=args.count_only))


if __name__ == "__main__":
    main()
