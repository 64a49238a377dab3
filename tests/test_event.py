"""The canonical event's helpers: time forms (fast paths agree with the general parser)."""

from datetime import datetime, timezone

import pytest

from gateway.event import (
    NO_JSON,
    Track,
    canonical_time,
    decode_event,
    encode_event,
    epoch_ms,
    format_ms,
    format_time,
    obj,
    parse_time,
    raw,
)

TIMES = [
    "2026-11-23T11:24:12.444924+00:00",
    "2026-11-23T11:24:12.444Z",
    "2026-11-23T11:24:12Z",
    "2026-11-23T11:24:12.4Z",
    "2026-11-23T11:24:12.444+01:00",
    "2026-11-23T11:24:12",
    "2026-11-23",
    "2026-11-23 11:24:12.123Z",
    "2024-02-29T23:59:59.999999Z",
]
NOT_TIMES = ["2026-02-30T11:24:12.444Z", "2026-11-23T25:24:12.444Z", "yesterday", "2026-11-23T11:24:12.44a4Z", ""]


@pytest.mark.parametrize("text", TIMES)
def test_canonical_time_agrees_with_the_general_parser(text):
    assert canonical_time(text) == format_time(parse_time(text))
    assert epoch_ms(canonical_time(text)) == epoch_ms(text) == int(parse_time(text).timestamp() * 1000 // 1)


@pytest.mark.parametrize("text", NOT_TIMES)
def test_what_is_no_time_is_refused(text):
    with pytest.raises(ValueError):
        canonical_time(text)


def test_format_ms_round_trips():
    moment = datetime(2026, 1, 2, 3, 4, 5, 678000, tzinfo=timezone.utc)
    millis = int(moment.timestamp() * 1000)
    assert format_ms(millis) == format_time(moment) == "2026-01-02T03:04:05.678Z"
    assert epoch_ms(format_ms(millis)) == millis


def test_raw_fields_pass_through_and_absent_ones_are_omitted():
    event = decode_event(b'{"type":"track","event":"E","properties":{"a":[1,{"b":null}]},"context":null}')
    assert isinstance(event, Track) and obj(event.properties) == {"a": [1, {"b": None}]}
    assert obj(event.context) == {} and obj(NO_JSON) == {}
    assert encode_event(Track(event="E", properties=raw({"x": 1}))) == b'{"type":"track","event":"E","properties":{"x":1}}'


def test_epoch_ms_of_a_checked_time_is_the_same_from_memory_or_parsed():
    """canonical_time notes each canonical time's epoch ms for ingest's second look."""
    import random

    from gateway import event as event_module

    rng = random.Random(7)
    for millis in (rng.randrange(0, 4_000_000_000_000) for _ in range(2000)):
        text = format_ms(millis)
        assert canonical_time(text) == text
        assert epoch_ms(text) == millis  # from memory
        event_module._epoch_ms_of.pop(text)
        assert epoch_ms(text) == millis  # parsed again
