"""Tranthor's public app API (Dittofeed's) both ways: the dialect its SDKs post, and a destination.

Source half: `POST /api/public/apps/{identify,track,page,screen,group,batch}` (and `/alias`,
which answers 400 `{"message":"Not yet implemented."}` like Dittofeed's). The key is the token
after the scheme word of `authorization` (`Basic <token>` or `Bearer <token>`; Dittofeed ignores
the scheme), else the `PublicWriteKey` header its docs show (with or without a scheme word). A
source's configured key is that token, e.g. `d2staWQtMTp3ay1zZWNyZXQtMg==` for an SDK whose
writeKey is `Basic d2staWQtMTp3ay1zZWNyZXQtMg==`. The body is JSON, sent as `application/json`,
`text/plain` or without a Content-Type (another one is a 415, as in Fastify). Like Dittofeed's schema
validation, one invalid item refuses the whole request (Decoded.atomic): 400 in Fastify's
shape `{"statusCode":400,"code":"FST_ERR_VALIDATION","error":"Bad Request","message":
"body/batch/0 must have required property 'messageId'"}`. An item needs `messageId`, `userId`
or `anonymousId`, `event` on track and `groupId` on group; `timestamp`, if present, must be ISO
8601. Success is 204 with an empty body; an unknown key is 401 `{"message":"InvalidWriteKey"}`.
A source without `limits:` takes Dittofeed's own: 5 MiB a request, no smaller limit per event
(the Node SDK does not retry, and a refused timer flush crashes its process). An empty batch
is a 204, as in Dittofeed.

Destination half: `POST {base_url}/api/public/apps/batch` with `authorization: Basic <token>`,
`{"batch":[...]}` of at most 100 items (Dittofeed inserts in chunks of 100) and 5 MiB (its
default body limit). 2xx delivered; 401 pauses the destination (bad key or ineligible
workspace); 400 is dead, only for the item its message names (`body/batch/<i>...`) when it
names one, the others are sent again; 413 splits; 429, 408, 5xx and network errors retry
(Retry-After honoured). Retries are safe: Dittofeed deduplicates on `messageId` when it reads.
Events Dittofeed would refuse are skipped and counted, not sent: alias (`alias_unsupported`),
no userId nor anonymousId (`missing_identifier`), track without event (`missing_event`),
group without groupId (`missing_group_id`).

Tranthor-only fields travel in `integrations.Tranthor` (the Segment way): track `files` and
group `assigned`. Other destinations get them there; the Tranthor destination puts them back.

Lossy conversions, in (Tranthor request -> canonical):
- Fields outside Dittofeed's schema and the Spec are dropped (`sentAt`, `originalTimestamp`,
  `receivedAt`, identify `properties`, track `traits`, batch-level `integrations`, ...);
  `context`, `traits`, `properties` and `integrations` pass through byte for byte.
- Batch-level `context` is merged into each item's (shallow, item keys win; as Dittofeed's
  batch.ts does) and the merged object re-encoded (the batch's keys first, no whitespace).
- `files` and `assigned` move into `integrations.Tranthor` (re-encoded with it); when the item
  says `"integrations":{"Tranthor":false}` they are dropped (the event never goes to Tranthor).
- `timestamp` becomes `originalTimestamp` rewritten as ISO 8601 UTC with milliseconds and "Z"
  (sub-millisecond digits and the UTC offset are lost); without one, trackgate's receipt time
  is the event time (Dittofeed would use its own, later, clock).
- Numbers and booleans in string fields (`userId`, `messageId`, `event`, ...) become strings,
  as Fastify's type coercion makes them (`42` -> "42", `true` -> "true"); a float is refused.
- Empty strings in `userId`, `anonymousId`, `messageId` and `timestamp` read as absent (an
  empty `messageId` is replaced by a generated one); a JSON `null` object reads as absent.
- On a single-event path the path decides the type; a body `type` is ignored.
- A key that occurs twice in one object: the last one wins.
Stricter than Dittofeed: an unparseable `timestamp` is refused (Dittofeed stores the epoch),
an empty `userId`/`event`/`groupId` counts as missing, `integrations` must be an object.

Lossy conversions, out (canonical -> Tranthor):
- alias is not sent (skipped, counted as `skipped_alias_unsupported`): Dittofeed has no alias.
- `timestamp` is the skew-corrected event time; `originalTimestamp`, `sentAt`, `receivedAt`
  and trackgate's `source` are not sent.
- `integrations` is sent (Dittofeed stores it raw, unread) minus the `Tranthor` extension
  fields put back at the top; an `integrations` left empty by that is left out.

Note: Dittofeed keeps a group's traits as a profile keyed by `groupId`, in the namespace of
user ids (a group id equal to a user id merges them); trackgate sends the group as it is.

Modules: api (the path, names and JSON codecs both halves share), inbound (requests in),
items (one message -> a canonical event, its checks), replies, sample (`trackgate send`),
settings, outbound (the batch requests), verdicts (classify).
"""

from .api import INTEGRATION_NAMES, PREFIX
from .inbound import DEFAULT_LIMITS, EMPTY_REQUEST_OK, ROUTES, decode
from .outbound import DEDUPES, build_requests, skip_reason
from .replies import reply_error, reply_ok
from .sample import sample_request
from .settings import Settings, batch_limits
from .verdicts import classify

__all__ = [
    "DEDUPES",
    "DEFAULT_LIMITS",
    "EMPTY_REQUEST_OK",
    "INTEGRATION_NAMES",
    "PREFIX",
    "ROUTES",
    "Settings",
    "batch_limits",
    "build_requests",
    "classify",
    "decode",
    "reply_error",
    "reply_ok",
    "sample_request",
    "skip_reason",
]
