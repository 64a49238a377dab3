"""Amplitude both ways: the dialect Amplitude's SDKs post in, and Amplitude as a destination.

Source half: `POST /2/httpapi` and `/batch` (JSON `{api_key, events, options,
client_upload_time}`), `POST /identify` and `/groupidentify` (form-encoded, or multipart, `api_key`
+ `identification`: one JSON object or an array; `options` too). The key is the body's `api_key`.
A request with any invalid event is refused whole (`Decoded.atomic`) with Amplitude's 400 naming
the events by index (`events_with_missing_fields`, `events_with_invalid_fields`,
`events_with_invalid_id_lengths`), so an SDK drops those and resends the rest. Amplitude's rules:
`event_type` required; `user_id` or `device_id` (ids shorter than `options.min_id_length`,
default 5, are removed first; placeholder ids like "null" are invalid) except on
`$groupidentify`; `time` an integer in ms; every known field of its documented JSON type. More
events than the source's `max_events` answer 413 (Amplitude's SDKs halve and resend). The SDKs
read the body's `code`, so every reply carries one equal to the HTTP status; an unknown key is
Amplitude's `400 {"error": "Invalid API key: ..."}` (the SDKs then drop the batch).
`/identify` and `/groupidentify` answer `200 success` as Amplitude does.

Mapping in (Amplitude -> canonical), after vendor-apis.md section 3.2:
- `$identify` -> identify, `$groupidentify` (and each /groupidentify item) -> group with
  `groupId` = the first value of `groups`, every other event -> track (`event_properties` ->
  `properties`). /identify items are identifies.
- `user_id` -> `userId`, `device_id` -> `anonymousId`, `insert_id` -> `messageId`; without one,
  `messageId` is derived: `amp-` + a SHA-256 digest of (api_key, device_id, user_id,
  event_type, time, event_id, and the property objects of an `$identify`/`$groupidentify`), so
  an SDK resend deduplicates. Without `time` (and for form items) the request's receive time and
  the item's index join the digest: Amplitude cannot deduplicate those either, and repeated
  calls (an `$add`, say) must not collapse into one.
- `time` -> `originalTimestamp`; `client_upload_time` -> `sentAt`, so the engine corrects skew.
- `user_properties` / `group_properties`: `$set`, `$setOnce` and plain keys become `traits`
  (`context.traits` on a track); every other operation (`$add`, `$append`, `$unset`,
  `$setOnce` again, ...) is kept as is in `integrations.Amplitude.user_properties` /
  `.group_properties`.
- Context: `ip` -> `context.ip` (`"$remote"` -> the client's address), `user_agent` ->
  `userAgent`, `language` -> `locale`, `os_*` -> `os.*`, `device_brand/manufacturer/model` ->
  `device.*`, `platform` -> `device.type`, `carrier` -> `network.carrier`,
  `country/region/city/dma/location_lat/location_lng` -> `location.*`, `app_version` ->
  `app.version`, `library` "name/version" -> `library.{name,version}`, `groups` -> also
  `context.groupId` (its first value).
- Everything else (`groups`, `session_id`, `event_id`, revenue fields, ad ids, `plan`,
  `partner_id`, unknown keys, an identify's `event_properties`, ...) is kept verbatim in
  `integrations.Amplitude`, which also carries `"from_amplitude": true`: Amplitude out then
  takes those fields from there only (it never lifts revenue out of properties for them).

Mapping out (canonical -> Amplitude): the inverse of the above, so Amplitude -> trackgate ->
Amplitude gives back every field the SDK sent, plus: `messageId` -> `insert_id`, `timestamp`
(skew-corrected) -> `time` in ms, `context.device.id` or else `anonymousId` -> `device_id`.
identify -> `$identify` with `user_properties: {$set: traits, ...kept operations}`; group ->
`$identify` with `groups: {<type>: groupId}` (and `user_properties.$set` of the same) plus a
form POST of the group's traits to `/groupidentify`; a group without a user, or one that came
from Amplitude, -> a `$groupidentify` event. page/screen -> events named by the templates in
the settings (`{name}`, `{category}`), name and category added to the properties. alias ->
skipped and counted (`skipped_alias_unsupported`) unless `use_usermap`, then `/usermap`. Events
from other sources also get revenue fields lifted from `properties` (`revenue`, `price`,
`quantity`, `currency`, `productId`/`product_id`, `revenueType`/`revenue_type`; they stay in
`event_properties` too), `session_id` from `integrations.Amplitude` or a numeric
`context.sessionId`, and `context.device.advertisingId` as `idfa` (iOS) or `adid` (Android).
On their tracks, pages and screens, the context extensions Amplitude has no field for (a
non-numeric `context.sessionId`, `context.source`, `context.groupId`: ThriveStack's session,
source and account) become `event_properties` of those names, where not already set. Requests stay within
Amplitude's limits: 2,000 events and 1 MB (`/batch`: 20 MB); /groupidentify 1,024 items, 1 MB.

Responses, per event (vendor-apis.md section 3.3): success needs a 2xx and a body `code` 2xx
(or no JSON body). 400 naming events: those are dead, the others `resend`; 400 with
`missing_field` or an invalid API key: all dead. 413: split (one event: dead). 429:
`throttled_events` retry after 30 s (or a Retry-After, if ever sent), those whose user or device is over the
daily quota are dead, the others `resend`; a 429 naming nothing retries all. 5xx and network
errors: the engine's one retry policy.

Lossy conversions, in (Amplitude -> canonical):
- A JSON `null` field reads as absent; ids shorter than `min_id_length` are removed (as
  Amplitude does); `"$remote"` becomes the client's address (dropped when it is unknown).
- A key both in `$set` and `$setOnce` with the same value comes back only under `$setOnce`;
  plain `user_properties` keys of an `$identify` come back under `$set` (Amplitude applies both
  alike), and so do a track's `$set` keys when no other operation is kept.
- `$setOnce` values are plain traits to other destinations (which set them every time), and
  the browser SDK's `[Amplitude] Page Viewed` stays a track, not a Spec page.
- `/identify` items become identifies and go out as `$identify` events (they count as events
  there); `/groupidentify` items go out as `$groupidentify` events.
- GET forms of /identify and /groupidentify, and the legacy Amplitude-JS endpoint, are not served.

Lossy conversions, out (canonical -> Amplitude):
- Dropped: `sentAt`, `receivedAt`, trackgate's `source`, `integrations` flags, `context.page`,
  `context.campaign`, the `context.groupId`/`sessionId`/`source` of identifies and groups
  from other sources, context keys without an Amplitude field, a page's/screen's type (they
  are events).
- Strings inside properties are cut to 1,024 characters (Amplitude's limit, as its SDKs do), an
  array inside an array and anything nested deeper than 40 levels is sent as its JSON text.
- Amplitude rewrites `language` tags to names ("en-US" -> "English") on its side.
- A `session_id` from another source that is no integer (nor ends in digits) is dropped.
- alias needs the Portfolio add-on (`/usermap`); without `use_usermap` it is skipped and counted.

Modules: fields (the field tables both halves share), inbound (requests in, each item's checks),
canonical (an Amplitude event -> canonical), replies, sample (`trackgate send`), settings,
encoder (a canonical event -> an Amplitude event), outbound (the requests), verdicts (classify).
"""

from .fields import DEFAULT_MIN_ID_LENGTH, INTEGRATION_NAMES
from .inbound import ROUTES, decode
from .outbound import build_requests, skip_reason
from .replies import reply_error, reply_ok
from .sample import sample_request
from .settings import DEFAULT_BASE_URL, Settings, batch_limits
from .verdicts import classify

__all__ = [
    "DEFAULT_BASE_URL",
    "DEFAULT_MIN_ID_LENGTH",
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
