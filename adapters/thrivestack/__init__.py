"""ThriveStack's telemetry API both ways: the dialect its clients post in, and ThriveStack as a destination.

Facts: ThriveStack's public API pages (api/{identify,track,group}, "Last updated: March 23,
2026") and its docs' LLM guidance file. No ThriveStack SDK could be installed to capture its
traffic, so the wire format is the documented one.

Source half: `POST /api/identify`, `/api/track`, `/api/group`, the API key in `x-api-key` (the
legacy `Authorization: Bearer` JWT is not taken), the body a JSON array of one or more objects
(a single object is refused: the docs say array).
ThriveStack refuses a whole request for one bad item, so decode marks the result atomic: any
reject turns the whole request into a 400 that names the item and field. Replies:
`200 {"success":true,"eventId":"evt_<digest of the request>"}`; errors as
`{"success":false,"error":<code>,"message":...}` (ThriveStack documents no error body, only the
statuses): 400 invalid JSON / not an array / a missing `user_id`, `event_name` or `group_id`,
401 a bad key, 413 too large, 429 under back-pressure (with Retry-After).

Destination half: arrays POSTed to `{base_url}/identify`, `/group`, `/track` with `x-api-key`,
identify and group requests before track (ThriveStack's documented call order). Page -> track
`page_visit`; screen -> track `screen_viewed` (both names are settings); alias and events
without a userId are skipped and counted (`skipped_alias_unsupported`,
`skipped_missing_user_id`). Verdicts: 2xx delivered; 401/403 pause the destination (the key is
wrong: retrying cannot help); a 400 of several events splits the array in halves until the bad
item is alone (ThriveStack names no index; the split ends at single events, so at most 2n-1
requests for n events), a 400 of one event is dead; 413 splits; 408/429/5xx (not 501) retry,
honouring Retry-After. ThriveStack has no idempotency key (DEDUPES = False): a retry after a
timeout or 5xx may duplicate, so the default retry budget is small (DEFAULT_RETRY).

Mapping (canonical = Segment Spec):
- `user_id` <-> `userId`; `group_id` <-> `groupId`; `event_name` <-> `event`, kept as sent
  (`signed_up` stays `signed_up`; out, Segment B2B names such as `Signed Up` become `signed_up`
  when `b2b_event_names` is on, the default); `timestamp` <-> `originalTimestamp` (out: the
  skew-corrected `timestamp`).
- `context.group_id` <-> `context.groupId`, `context.device_id` <-> `context.device.id`,
  `context.session_id` <-> `context.sessionId`, `context.source` <-> `context.source`.
- identify traits `user_email`, `user_name`, `first_name`, `last_name`, `created_at` <->
  `email`, `name`, `firstName`, `lastName`, `createdAt`; group traits `account_name`,
  `created_at` <-> `name`, `createdAt`. Other traits (`phone`, `plan`, `group_type`,
  `account_domain`, custom ones) keep their names.
- track `page_visit` <-> a page: `page_url`, `page_path`, `page_referrer`, `page_title` <->
  properties `url`, `path`, `referrer`, `title`; `page_name`/`page_category` (trackgate's own
  custom properties) <-> the page's `name`/`category`.
- `utm_source|medium|campaign|term|content` are copied to `context.campaign.{source, medium,
  name, term, content}` and stay in properties; on a track `page_*` are copied to
  `context.page.*` too. Out, each is added back from the context where properties lack it.
- messageId: kept when the item carries `messageId`/`message_id`; otherwise derived from the
  API key, the path and the item's JSON (keys sorted), so a client's resend of the same array
  is deduplicated. An item without `timestamp` also mixes in its position in the array, so
  identical items of one request stay distinct.

Lossy conversions, in (ThriveStack request -> canonical):
- Item fields outside ThriveStack's documented ones are dropped (`properties` on identify or
  group, `traits` on track, any other top-level key); context keys other than the four above
  pass through unchanged.
- A reserved name and its canonical twin in one object (`user_email` and `email`): the
  reserved name's value wins, the twin's value is lost. Only lower-case reserved names are
  renamed (ThriveStack calls group trait names case-insensitive).
- Times are rewritten as ISO 8601 UTC with milliseconds and "Z" (sub-ms digits and offsets go).
- Identical items with the same `timestamp` are one event (the same derived messageId): a
  second one within the dedupe window is acknowledged, not stored (ThriveStack's own guidance
  offsets events of one handler by 1 ms for the same reason). The same holds for identical
  items without `timestamp` at the same position of two requests: a client cannot tell a
  resend from a repeat without a time, and the dedupe of resends is what keeps retries safe.
- A `page_visit` item loses its event name (it becomes a page; out it is `page_event_name`).

Lossy conversions, out (canonical -> ThriveStack):
- messageId, anonymousId (sent as `context.device_id` only when `context.device.id` is
  absent), sentAt, receivedAt, originalTimestamp, integrations and trackgate's source name.
- Every context key but groupId, device.id, sessionId and source (ip, userAgent, library,
  locale, os, app, ...): ThriveStack documents only those four.
- A page's properties are renamed (`url` -> `page_url`, ...); a screen becomes a track named
  `screen_event_name` with `screen_name`/`screen_category` properties: it comes back as a track.
- A group's `context.group_id` is always its groupId (ThriveStack's rule), whatever the
  canonical `context.groupId` said.
- Alias and events without userId are not sent (skipped and counted).

Modules: fields (the names both halves share), inbound (requests in, each item's checks, the
canonical events), replies, sample (`trackgate send`), settings (with the retry defaults),
encoder (a canonical event -> a ThriveStack item), outbound (the requests), verdicts (classify).
"""

from .fields import INTEGRATION_NAMES
from .inbound import ROUTES, decode
from .outbound import build_requests, skip_reason
from .replies import reply_error, reply_ok
from .sample import sample_request
from .settings import DEDUPES, DEFAULT_RETRY, Settings, batch_limits
from .verdicts import classify

__all__ = [
    "DEDUPES",
    "DEFAULT_RETRY",
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
    "skip_reason",
]
