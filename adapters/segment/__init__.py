"""Segment's HTTP Tracking API both ways: the dialect SDKs post in, and Segment as a destination.

Source half: the 14 paths `/v1/{identify,track,page,screen,group,alias,batch}` and their
analytics.js short forms `/v1/{i,t,p,s,g,a,b}`, plus `/v1/import` (an alias of batch). The body
is JSON whatever the Content-Type says. RudderStack's SDKs speak this dialect too. The write key
is the user of `Authorization: Basic` (colon optional), else the body's `writeKey`.

Destination half: `POST {base_url}/v1/batch` with Basic auth, split by Segment's limits, and
Segment's SDK retry rules (retry 408, 410, 429, 460 and 5xx but 501/505/511; a 400 about size
or a 413 splits the batch; other 4xx are dead).

Whole requests are refused (IngestError 400) for: invalid_json (not JSON, not UTF-8, not an
object), invalid_batch (`batch` missing or not a list, batch-level `context`/`integrations` not
objects), invalid_timestamp (batch-level `sentAt`), too_many_events, too_deeply_nested; and
with 404 not_found off the routes.
Single messages are rejected, the others kept, for: event_too_large, invalid_encoding,
invalid_event (not an object), invalid_type, missing_identifier, missing_event,
missing_group_id, missing_previous_id, invalid_field (a wrong JSON type; the message names the
field), invalid_timestamp, invalid_message_id (over 100 characters).

Lossy conversions, in (Segment request -> canonical):
- Top-level fields outside the Spec are dropped (`_metadata`, `channel`, `version`, `options`,
  an item's `writeKey`, identify `properties`, ...). `context`, `integrations`, `properties` and
  `traits` pass through byte for byte (except the two merges below).
- The item's `timestamp` becomes `originalTimestamp` (Rudder Node's `originalTimestamp` is used
  when there is no `timestamp`; with both, the item's `originalTimestamp` is dropped).
- Every time is rewritten as ISO 8601 UTC with milliseconds and "Z": sub-millisecond digits
  and the client's UTC offset are lost.
- A client's own `receivedAt` and a top-level `source` are dropped: trackgate sets them.
- Empty strings in userId, anonymousId, messageId and the time fields read as absent; a JSON
  `null` object (`"traits": null`) reads as absent.
- Batch-level `context`/`integrations` are merged into each item (shallow, item keys win): the
  merged object is re-encoded (key order: the batch's keys first, whitespace removed).
- An identify without `traits` takes them from `context.traits` (Rudder Python); the context
  keeps its copy.
- On a single-event path the path decides the type; a body `type` that disagrees is replaced.
- A key that occurs twice in one object: the last one wins.

Lossy conversions, out (canonical -> Segment):
- trackgate's `source` is not sent (not part of the Spec).
- `sentAt` is not sent: trackgate already corrected the client's clock skew in `timestamp`,
  and Segment would correct it again against its own receive time, moving any event delivered
  late (queued, retried, replayed) to its delivery time. An event without `timestamp` is sent
  with its `originalTimestamp` as `timestamp`.
- Segment ignores context keys outside its Spec and recomputes `receivedAt`; `integrations`
  flags are sent as they are, and Segment honours them for its own destinations.

Modules: inbound (requests in, item by item), onepass (a valid request decoded in one msgspec
pass), message (one message checked against the Spec, in canonical form), keys (the write key),
replies, outbound (settings, the requests), verdicts (classify), sample (`trackgate send`).
"""

from .inbound import ROUTES, decode
from .outbound import INTEGRATION_NAMES, Settings, batch_limits, build_requests
from .replies import reply_error, reply_ok
from .sample import sample_request
from .verdicts import classify

__all__ = [
    "INTEGRATION_NAMES",
    "ROUTES",
    "Settings",
    "batch_limits",
    "build_requests",
    "classify",
    "decode",
    "reply_error",
    "reply_ok",
    "sample_request",
]
