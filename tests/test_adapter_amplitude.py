"""adapters/amplitude/ beyond the golden fixtures: atomic rejects and the 400 that names them,
the form endpoints, round trips, group and alias fan-out, batching limits, and each lossy case."""

import json
import random
from urllib.parse import parse_qs, urlencode

import msgspec
import pytest

from adapters import amplitude
from adapters.amplitude import encoder
from gateway import registry
from gateway.adapter import (
    Group,
    Identify,
    InboundRequest,
    IngestError,
    OutboundRequest,
    Response,
    SourceLimits,
    Track,
    decode_event,
    encode_event,
)

RECEIVED_AT = "2026-11-23T11:26:28.000Z"
SETTINGS = amplitude.Settings(api_key="OUT_KEY")


def inbound(body, path="/2/httpapi", headers=None, client_ip="203.0.113.9", received_at=RECEIVED_AT) -> InboundRequest:
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    return InboundRequest("POST", path, headers or {}, data, received_at, client_ip)


def decode(body, **kw):
    return amplitude.decode(inbound(body, **kw), SourceLimits())


def stored(events):
    """Canonical events as the store keeps them (engine enrichment included)."""
    out = []
    for event in events:
        event.timestamp = event.timestamp or event.original_timestamp or RECEIVED_AT
        event.received_at, event.source = RECEIVED_AT, "amp"
        out.append(decode_event(encode_event(event)))
    return out


def sent_events(requests) -> list[dict]:
    return [event for request in requests if request.url.endswith("/2/httpapi") for event in json.loads(request.body)["events"]]


def form(request: OutboundRequest) -> dict:
    fields = parse_qs(request.body.decode(), strict_parsing=True)
    return {name: values[0] for name, values in fields.items()}


def test_registered_both_halves():
    assert registry.source("amplitude") is amplitude and registry.destination("amplitude") is amplitude
    assert set(amplitude.ROUTES) == {"/2/httpapi", "/batch", "/identify", "/groupidentify"}


# ---- source: rejects and the 400 that names them -------------------------------------------


def test_invalid_events_refuse_the_request_and_the_reply_names_them():
    good = {"event_type": "Good", "user_id": "user-123", "insert_id": "i0"}
    body = {"api_key": "K", "events": [
        good,
        {"user_id": "user-123"},  # 1: no event_type
        {"event_type": "E", "user_id": "user-123", "time": "2026-11-23T11:26:27Z"},  # 2: ISO time
        {"event_type": "E", "user_id": "abc"},  # 3: id too short (default 5)
        {"event_type": "E"},  # 4: no id
        {"event_type": "E", "user_id": "undefined"},  # 5: placeholder id
        {"event_type": "E", "user_id": "user-123", "time": 1.5},  # 6
        good,
    ]}
    decoded = decode(body)
    assert decoded.atomic and decoded.events == [] and decoded.key == "K"
    assert [(r.index, r.code, r.field) for r in decoded.rejects] == [
        (1, "missing_field", "event_type"), (2, "invalid_field", "time"), (3, "invalid_id_length", "user_id"),
        (4, "missing_field", "user_id"), (5, "invalid_field", "user_id"), (6, "invalid_field", "time"),
    ]
    assert all(json.loads(r.payload) == body["events"][r.index] for r in decoded.rejects)
    error = IngestError(400, decoded.rejects[0].code, decoded.rejects[0].message, rejects=decoded.rejects)
    reply = amplitude.reply_error(inbound(body), error)
    assert reply.status == 400
    assert json.loads(reply.body) == {
        "code": 400,
        "error": "Request missing required field",
        "events_with_missing_fields": {"event_type": [1], "user_id": [4]},
        "events_with_invalid_fields": {"time": [2, 6], "user_id": [5]},
        "events_with_invalid_id_lengths": {"user_id": [3]},
    }
    assert "missing_field" not in json.loads(reply.body)  # that would make the SDK drop every event


def test_reply_for_invalid_fields_only_and_for_items_that_are_no_objects():
    decoded = decode({"api_key": "K", "events": [{"event_type": "E", "user_id": "user-1", "groups": []}, 7]})
    error = IngestError(400, decoded.rejects[0].code, "x", rejects=decoded.rejects)
    assert json.loads(amplitude.reply_error(inbound({}), error).body) == {
        "code": 400, "error": "Invalid field values on some events",
        "events_with_invalid_fields": {"groups": [0], "event": [1]},
    }


def test_every_whole_request_error_answers_with_a_code_equal_to_the_status():
    for code, status in [("missing_api_key", 400), ("invalid_json", 400), ("request_too_large", 413),
                         ("backpressure", 503), ("internal_error", 503), ("invalid_write_key", 401)]:
        reply = amplitude.reply_error(inbound({}), IngestError(status, code, "m", 2))
        assert json.loads(reply.body)["code"] == reply.status


# ---- source: form endpoints ------------------------------------------------------------------


def test_identify_multipart_form():
    boundary = "XyZ"
    parts = [("api_key", "K"), ("identification", json.dumps({"user_id": "user-123", "user_properties": {"$set": {"a": 1}}}))]
    body = "".join(f'--{boundary}\r\nContent-Disposition: form-data; name="{n}"\r\n\r\n{v}\r\n' for n, v in parts)
    body += f"--{boundary}--\r\n"
    decoded = decode(body.encode(), path="/identify", headers={"content-type": f"multipart/form-data; boundary={boundary}"})
    assert decoded.key == "K" and not decoded.rejects
    event = json.loads(encode_event(decoded.events[0]))
    assert (event["type"], event["userId"], event["traits"]) == ("identify", "user-123", {"a": 1})


def test_form_endpoints_take_a_json_body_too_and_reject_items_by_index():
    body = {"api_key": "K", "identification": [{"group_type": "org", "group_value": "o-1"}, {"group_type": "org"}, "x"]}
    decoded = decode(body, path="/groupidentify")
    assert decoded.atomic and [(r.index, r.code, r.field) for r in decoded.rejects] == [
        (1, "missing_field", "group_value"), (2, "invalid_event", "event")]
    decoded = decode({"api_key": "K", "identification": {"user_properties": {"a": 1}}}, path="/identify")
    assert [(r.code, r.field) for r in decoded.rejects] == [("missing_field", "user_id")]


def test_identify_form_items_go_out_as_identify_events():
    """Lossy: /identify does not count as an event at Amplitude; trackgate sends an $identify."""
    body = urlencode({"api_key": "K", "identification": json.dumps({"user_id": "user-123", "user_properties": {"plan": "pro"}, "paying": True})})
    events = stored(decode(body.encode(), path="/identify").events)
    requests = amplitude.build_requests(events, SETTINGS)
    assert [r.url for r in requests] == ["https://api2.amplitude.com/2/httpapi"]
    [sent] = sent_events(requests)
    assert sent["event_type"] == "$identify" and sent["user_properties"] == {"$set": {"plan": "pro"}} and sent["paying"] is True
    assert sent["insert_id"] == events[0].message_id and sent["time"] == 1795433188000


def test_groupidentify_form_items_go_out_as_groupidentify_events():
    body = urlencode({"api_key": "K", "identification": json.dumps([{"group_type": "org", "group_value": "o-1", "group_properties": {"n": 1}}])})
    events = stored(decode(body.encode(), path="/groupidentify").events)
    [sent] = sent_events(amplitude.build_requests(events, SETTINGS))
    assert {k: sent[k] for k in ("event_type", "groups", "group_properties")} == {
        "event_type": "$groupidentify", "groups": {"org": "o-1"}, "group_properties": {"$set": {"n": 1}}}


# ---- source: message ids ---------------------------------------------------------------------


def test_derived_message_id_is_stable_across_resends_with_time():
    body = {"api_key": "K", "events": [{"event_type": "E", "user_id": "user-123", "time": 1795433187000}]}
    first = decode(body).events[0].message_id
    again = decode(body, received_at="2026-11-23T12:00:00.000Z", client_ip="10.0.0.1").events[0].message_id
    other_key = decode({**body, "api_key": "K2"}).events[0].message_id
    assert first == again != other_key and first.startswith("amp-")


def test_derived_message_id_without_time_differs_per_request():
    body = {"api_key": "K", "events": [{"event_type": "E", "user_id": "user-123"}]}
    assert decode(body).events[0].message_id != decode(body, received_at="2026-11-23T11:26:29.000Z").events[0].message_id


# ---- source: the sample call of `trackgate send` --------------------------------------------

SAMPLE_TYPES = {"identify": Identify, "alias": Identify, "group": Group, "track": Track, "page": Track, "screen": Track}


@pytest.mark.parametrize("kind", sorted(SAMPLE_TYPES))
def test_sample_request_decodes_to_the_intended_event(kind):
    path, headers, body = amplitude.sample_request("K", {"type": kind, "userId": "u-9", "event": "Ev", "messageId": "m-9"})
    assert (path, headers) == ("/2/httpapi", {"Content-Type": "application/json; charset=UTF-8"})
    decoded = amplitude.decode(inbound(body, path=path), SourceLimits())
    assert decoded.key == "K" and not decoded.rejects
    (event,) = decoded.events
    assert type(event) is SAMPLE_TYPES[kind] and (event.user_id, event.message_id) == ("u-9", "m-9")
    [sent] = json.loads(body)["events"]
    assert sent["insert_id"] == "m-9" and sent["library"] == "amplitude-python/1.3.0"


def test_sample_events_are_named_as_the_destination_names_pages_screens_and_groups():
    names = {}
    for kind in ("page", "screen", "track", "group", "alias"):
        [sent] = json.loads(amplitude.sample_request("K", {"type": kind, "event": "Ev"})[2])["events"]
        names[kind] = sent["event_type"]
        assert sent["user_id"] == "trackgate-test-user" and "insert_id" not in sent
    assert names == {"page": "Viewed Home Page", "screen": "Viewed Home Screen", "track": "Ev",
                     "group": "$groupidentify", "alias": "$identify"}
    [alias] = decode(amplitude.sample_request("K", {"type": "alias", "userId": "u-9"})[2]).events
    assert alias.anonymous_id == "trackgate-test-anonymous"  # Amplitude merges the device into the user
    [group] = decode(amplitude.sample_request("K", {"type": "group"})[2]).events
    assert group.group_id == "trackgate-test-group"


# ---- round trips -----------------------------------------------------------------------------

SDK_FIELDS = {  # every key amplitude-analytics 1.3.0 can put on an event (EVENT_KEY_MAPPING)
    "user_id": "user-123", "device_id": "device-abc", "event_type": "Everything", "time": 1795433187066,
    "event_properties": {"a": [1, 2], "b": {"c": None}}, "user_properties": {"plan": "pro"},
    "groups": {"company": ["acme", "beta"]}, "app_version": "1.2.3", "platform": "iOS", "os_name": "iOS",
    "os_version": "17", "device_brand": "Apple", "device_manufacturer": "Apple", "device_model": "iPhone",
    "carrier": "T", "country": "DE", "region": "BE", "city": "Berlin", "dma": "x", "language": "English",
    "price": 1.5, "quantity": 2, "revenue": 3.0, "currency": "EUR", "productId": "p", "revenueType": "t",
    "location_lat": 1.25, "location_lng": -2.5, "ip": "192.0.2.1", "idfa": "a", "idfv": "b", "adid": "c",
    "android_id": "d", "event_id": 12, "session_id": 1795433100000, "insert_id": "ins-1",
    "library": "amplitude-python/1.3.0", "plan": {"branch": "main", "source": "web", "version": "1", "versionId": "v"},
    "ingestion_metadata": {"source_name": "s", "source_version": "1"}, "partner_id": "p-1",
    "version_name": "v", "user_agent": "UA",
}

ROUND_TRIPS = [
    SDK_FIELDS,
    {"event_type": "$identify", "user_id": "user-123", "insert_id": "i", "time": 1,
     "user_properties": {"$set": {"a": 1}, "$setOnce": {"b": 2}, "$add": {"n": 1}, "$append": {"l": "x"},
                         "$prepend": {"l": "y"}, "$unset": {"u": "-"}, "$preInsert": {"l": 1}, "$postInsert": {"l": 2},
                         "$remove": {"l": 3}, "$clearAll": "-"}},
    {"event_type": "$identify", "user_id": "user-123", "insert_id": "i", "time": 1, "user_properties": {"$setOnce": {"b": 2}}},
    {"event_type": "$identify", "device_id": "device-1", "insert_id": "i", "time": 1, "groups": {"org": "o"},
     "user_properties": {"$set": {"org": "o"}}, "event_properties": {"e": 1}},
    {"event_type": "$groupidentify", "insert_id": "g", "time": 1, "groups": {"org": "o"},
     "group_properties": {"$set": {"name": "O"}, "$add": {"seats": 1}, "$unset": {"x": "-"}}},
    {"event_type": "$groupidentify", "user_id": "user-123", "insert_id": "g", "time": 1, "groups": {"org": "o"}},
    {"event_type": "Track", "user_id": "user-123", "insert_id": "t", "time": 1,
     "user_properties": {"$set": {"a": 1}, "$add": {"n": 1}}, "event_properties": {"revenue": 5, "price": 1}},
    {"event_type": "revenue_amount", "user_id": "user-123", "insert_id": "r", "time": 1,
     "event_properties": {"$price": 9.99, "$productId": "sku-1", "$quantity": 2, "$revenueType": "x"}},
    {"event_type": "Odd", "device_id": "device-1", "insert_id": "o", "time": 1, "library": "no-slash",
     "unknown_key": {"kept": True}, "$skip_user_properties_sync": False},
]


@pytest.mark.parametrize("event", ROUND_TRIPS, ids=lambda e: e["event_type"])
def test_amplitude_to_amplitude_gives_back_every_field(event):
    events = stored(decode({"api_key": "K", "events": [event], "options": {"min_id_length": 1}}).events)
    requests = amplitude.build_requests(events, SETTINGS)
    assert [r.url for r in requests] == ["https://api2.amplitude.com/2/httpapi"]  # no extra requests
    assert sent_events(requests) == [event]


def test_remote_ip_goes_out_as_the_clients_address():
    event = {"event_type": "E", "device_id": "device-1", "insert_id": "i", "time": 1, "ip": "$remote"}
    events = stored(decode({"api_key": "K", "events": [event]}, client_ip="198.51.100.7").events)
    assert sent_events(amplitude.build_requests(events, SETTINGS)) == [{**event, "ip": "198.51.100.7"}]


def test_lossy_plain_identify_properties_come_back_under_set():
    event = {"event_type": "$identify", "user_id": "user-123", "insert_id": "i", "time": 1, "user_properties": {"a": 1}}
    events = stored(decode({"api_key": "K", "events": [event]}).events)
    assert sent_events(amplitude.build_requests(events, SETTINGS)) == [{**event, "user_properties": {"$set": {"a": 1}}}]


def test_lossy_track_with_only_set_comes_back_plain():
    event = {"event_type": "T", "user_id": "user-123", "insert_id": "i", "time": 1, "user_properties": {"$set": {"a": 1}}}
    events = stored(decode({"api_key": "K", "events": [event]}).events)
    assert sent_events(amplitude.build_requests(events, SETTINGS)) == [{**event, "user_properties": {"a": 1}}]


def test_lossy_short_ids_are_removed_as_amplitude_removes_them():
    event = {"event_type": "T", "user_id": "ab", "device_id": "device-1", "insert_id": "i", "time": 1}
    events = stored(decode({"api_key": "K", "events": [event]}).events)
    assert sent_events(amplitude.build_requests(events, SETTINGS)) == [{k: v for k, v in event.items() if k != "user_id"}]


def test_locale_is_sent_as_it_is():
    """Amplitude itself rewrites language tags to names; trackgate sends what it got."""
    event = decode_event(json.dumps({"type": "track", "event": "E", "userId": "u", "messageId": "m",
                                     "timestamp": RECEIVED_AT, "context": {"locale": "en-US"}}).encode())
    assert sent_events(amplitude.build_requests([event], SETTINGS))[0]["language"] == "en-US"


# ---- destination: group, alias, limits --------------------------------------------------------


def canonical(**fields):
    base = {"messageId": "m", "userId": "user-1", "timestamp": RECEIVED_AT}
    return decode_event(json.dumps({**base, **fields}).encode())


def test_group_with_traits_is_an_identify_and_a_groupidentify_of_the_same_event():
    events = [canonical(type="track", event="A", messageId="m0"),
              canonical(type="group", groupId="acme", traits={"name": "Acme", "tags": [["x"]]}, messageId="m1")]
    requests = amplitude.build_requests(events, SETTINGS)
    assert [(r.url, r.events) for r in requests] == [
        ("https://api2.amplitude.com/2/httpapi", (0, 1)), ("https://api2.amplitude.com/groupidentify", (1,))]
    assert sent_events(requests)[1] == {"user_id": "user-1", "time": 1795433188000, "insert_id": "m1",
                                        "event_type": "$identify", "groups": {"company": "acme"},
                                        "user_properties": {"$set": {"company": "acme"}}}
    group_form = requests[1]
    assert dict(group_form.headers) == {"Content-Type": "application/x-www-form-urlencoded"}
    fields = form(group_form)
    assert fields["api_key"] == "OUT_KEY"
    assert json.loads(fields["identification"]) == [
        {"group_type": "company", "group_value": "acme", "group_properties": {"$set": {"name": "Acme", "tags": ['["x"]']}}}]


def test_groupidentify_requests_hold_at_most_1024_groups():
    events = [canonical(type="group", groupId=f"g{i}", traits={"n": i}, messageId=f"m{i}") for i in range(1030)]
    forms = [r for r in amplitude.build_requests(events, SETTINGS) if r.url.endswith("/groupidentify")]
    assert [len(r.events) for r in forms] == [1024, 6]
    assert [len(json.loads(form(r)["identification"])) for r in forms] == [1024, 6]


def test_alias_is_skipped_and_counted_unless_usermap():
    alias = canonical(type="alias", previousId="anon-1", userId="user-1")
    assert amplitude.skip_reason(alias, SETTINGS) == "alias_unsupported"
    assert amplitude.skip_reason(canonical(type="track", event="E"), SETTINGS) is None
    with_usermap = msgspec.structs.replace(SETTINGS, use_usermap=True)
    assert amplitude.skip_reason(alias, with_usermap) is None
    requests = amplitude.build_requests([canonical(type="track", event="E"), alias], with_usermap)
    assert [(r.url, r.events) for r in requests] == [
        ("https://api2.amplitude.com/2/httpapi", (0,)), ("https://api.amplitude.com/usermap", (1,))]
    assert json.loads(form(requests[1])["mapping"]) == [{"user_id": "anon-1", "global_user_id": "user-1"}]
    eu = msgspec.structs.replace(with_usermap, base_url="https://api.eu.amplitude.com")
    assert amplitude.build_requests([alias], eu)[0].url == "https://api.eu.amplitude.com/usermap"
    assert amplitude.build_requests([alias], SETTINGS) == []  # not encodable: the engine dead-letters it


def test_requests_stay_within_2000_events_and_1_mb():
    events = [canonical(type="track", event="E", messageId=f"m{i}") for i in range(2001)]
    requests = amplitude.build_requests(events, SETTINGS)
    assert [len(r.events) for r in requests] == [2000, 1]
    big = [canonical(type="track", event="E", messageId=f"b{i}", properties={"pad": "x" * 1000, "more": ["y" * 1000] * 90})
           for i in range(12)]
    requests = amplitude.build_requests(big, SETTINGS)
    assert len(requests) > 1 and all(len(r.body) <= 1_000_000 for r in requests)
    assert [i for r in requests for i in r.events] == list(range(12))
    assert all(json.loads(r.body)["options"] == {"min_id_length": 1} for r in requests)


def test_classify_reads_the_ids_of_the_request_it_was_given():
    events = [canonical(type="track", event="E", messageId=f"m{i}", userId=f"user-{i % 2}") for i in range(4)]
    request = amplitude.build_requests(events, SETTINGS)[0]
    body = {"code": 429, "throttled_events": [1, 2, 3], "exceeded_daily_quota_users": {"user-1": 500001}}
    verdicts = amplitude.classify(request, Response(429, {}, json.dumps(body).encode()))
    assert [(v.status, v.code) for v in verdicts] == [
        ("resend", "amplitude_not_at_fault"), ("dead", "amplitude_daily_quota"),
        ("retry", "amplitude_throttled"), ("dead", "amplitude_daily_quota")]
    assert verdicts[2].retry_after_s == 30.0


def test_a_group_can_fail_in_one_request_and_succeed_in_the_other():
    event = canonical(type="group", groupId="acme", traits={"name": "Acme"})
    events_request, group_request = amplitude.build_requests([event], SETTINGS)
    ok = amplitude.classify(events_request, Response(200, {}, b'{"code":200}'))
    failed = amplitude.classify(group_request, Response(503, {}, b""))
    assert [v.status for v in ok] == ["delivered"] and [v.status for v in failed] == ["retry"]


def test_browser_page_views_stay_track_events():
    """Lossy for other destinations: `[Amplitude] Page Viewed` is a track, not a Spec page."""
    event = {"event_type": "[Amplitude] Page Viewed", "device_id": "device-1", "insert_id": "p", "time": 1,
             "event_properties": {"[Amplitude] Page Path": "/docs"}}
    [decoded] = decode({"api_key": "K", "events": [event]}).events
    assert json.loads(encode_event(decoded))["type"] == "track"
    assert sent_events(amplitude.build_requests(stored([decoded]), SETTINGS)) == [event]


# ---- Amplitude's limits, against a plain walk --------------------------------------------------
# The encoder checks in C that properties and traits are within the limits and walks them in
# Python only when something must change; these random events hold what must: strings either
# side of 1,024 characters (multi-byte, astral, escaped), arrays in arrays, objects around the
# 40-level limit and around the levels the C check covers.


def reference_fit(value, depth=0, in_array=False):
    """Amplitude's limits the plain way: strings cut to 1,024 characters; an array directly in an
    array, or an object or array 40 levels down, sent as its JSON text (cut too)."""
    if isinstance(value, str):
        return value[:1024]
    if isinstance(value, dict) and depth < 40:
        return {key: reference_fit(item, depth + 1) for key, item in value.items()}
    if isinstance(value, list) and depth < 40 and not in_array:
        return [reference_fit(item, depth + 1, True) for item in value]
    if isinstance(value, (dict, list)):
        return msgspec.json.encode(value).decode()[:1024]
    return value


def random_text(rng):
    if rng.random() < 0.3:
        return rng.choice("aé😀\"\\\n") * rng.choice((1023, 1024, 1025, 1100))
    return "".join(rng.choice("ab é😀\"\\/") for _ in range(rng.randrange(8)))


def random_value(rng, levels):
    kind = rng.random()
    if levels and kind < 0.3:
        return {random_text(rng)[:5]: random_value(rng, levels - 1) for _ in range(rng.randrange(3))}
    if levels and kind < 0.5:
        return [random_value(rng, levels - 1) for _ in range(rng.randrange(3))]
    return rng.choice((None, True, 0, -7, 2**70, 1.5, random_text(rng)))


def nested(rng, levels):
    value = random_value(rng, 2)
    for _ in range(levels):
        value = rng.choice(({"d": value}, [value], {"a": [value]}))
    return value


def random_object(rng):
    return {f"k{i}": nested(rng, rng.choice((0, 8, 9, 10, 11, 38, 39, 40, 41))) if rng.random() < 0.3
            else random_value(rng, 3) for i in range(rng.randrange(5))}


def random_events(rng, n):
    for i in range(n):
        kind = ("track", "page", "identify", "group")[i % 4]
        fields = {"type": kind, "messageId": f"m{i}", "userId": "user-1", "timestamp": RECEIVED_AT}
        if kind in ("track", "page"):
            fields["properties"] = random_object(rng)
        else:
            fields["traits"] = random_object(rng)
        if kind == "track":
            fields.update(event="E", context={"traits": random_object(rng), "page": random_object(rng)})
        if kind == "page":
            fields.update(name=random_text(rng), category=random_text(rng))
        if kind == "group":
            fields["groupId"] = "acme"
        separators = rng.choice(((",", ":"), (", ", ": ")))  # stored as the client sent it
        body = json.dumps(fields, ensure_ascii=rng.random() < 0.5, separators=separators)
        yield fields, decode_event(body.encode())


def test_properties_and_traits_go_out_as_a_plain_walk_fits_them():
    rng = random.Random(20261123)
    for fields, event in random_events(rng, 400):
        requests = amplitude.build_requests([event], SETTINGS)
        [sent] = sent_events(requests)
        kind = fields["type"]
        if kind == "track":
            assert sent["event_properties"] == reference_fit(fields["properties"])
            assert sent["user_properties"] == reference_fit(fields["context"]["traits"])
        elif kind == "page":
            properties = {**fields["properties"]}
            properties.setdefault("name", fields["name"])
            properties.setdefault("category", fields["category"])
            assert sent["event_properties"] == reference_fit(properties)
        elif kind == "identify":
            assert sent.get("user_properties") == (reference_fit({"$set": fields["traits"]}) if fields["traits"] else None)
        else:
            groups = [json.loads(form(r)["identification"]) for r in requests if r.url.endswith("/groupidentify")]
            expected = [[{"group_type": "company", "group_value": "acme",
                          "group_properties": reference_fit({"$set": fields["traits"]})}]] if fields["traits"] else []
            assert groups == expected


def test_the_check_in_c_changes_no_byte_of_the_requests(monkeypatch):
    """The same events with the C check refusing everything (so each object takes the walk)."""
    events = [event for _, event in random_events(random.Random(7), 200)]
    checked = amplitude.build_requests(events, SETTINGS)

    def refuse(value):
        raise msgspec.ValidationError("walk it")

    monkeypatch.setattr(encoder, "_decode_within_limits", (refuse, refuse))
    assert amplitude.build_requests(events, SETTINGS) == checked


def test_context_keys_amplitude_has_no_field_for_are_not_decoded():
    """A browser's context is mostly keys Amplitude has no field for (page, campaign, ...): they
    are skipped unread, so a number no float holds there no longer fails the whole batch."""
    event = canonical(type="track", event="E", context={"userAgent": "UA", "screen": {"density": 2}})
    odd = decode_event(encode_event(event).replace(b'"density":2', b'"density":1e400'))
    assert sent_events(amplitude.build_requests([odd], SETTINGS)) == sent_events(amplitude.build_requests([event], SETTINGS))
