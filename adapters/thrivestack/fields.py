"""ThriveStack's vocabulary both halves share: its renamed fields, standard events, the JSON codec."""

from __future__ import annotations

from typing import Any

import msgspec

encode_json = msgspec.json.Encoder().encode

INTEGRATION_NAMES = ("ThriveStack", "Thrivestack")
USER_TRAITS = {"user_email": "email", "user_name": "name", "first_name": "firstName",
               "last_name": "lastName", "created_at": "createdAt"}
GROUP_TRAITS = {"account_name": "name", "created_at": "createdAt"}
PAGE_PROPERTIES = {"page_url": "url", "page_path": "path", "page_referrer": "referrer", "page_title": "title"}
UTM_PROPERTIES = {"utm_source": "source", "utm_medium": "medium", "utm_campaign": "name",
                  "utm_term": "term", "utm_content": "content"}
CONTEXT_KEYS = {"group_id": "groupId", "session_id": "sessionId", "source": "source"}  # + device_id
PAGE_VISIT = "page_visit"
# Segment's B2B SaaS Spec names -> ThriveStack's standard events (vendor-apis.md 4.2).
B2B_EVENTS = {
    "Signed Up": "signed_up", "Account Created": "account_created",
    "Account Added User": "account_added_user", "Invite Sent": "invite_sent",
    "Signed In": "signed_in", "Signed Out": "signed_out", "Account Deleted": "account_deleted",
    "Account Removed User": "account_removed_user", "Trial Started": "trial_started",
    "Trial Ended": "trial_ended",
}


def invert(mapping: dict[str, str]) -> dict[str, str]:
    return {canonical: vendor for vendor, canonical in mapping.items()}


def rename(fields: dict[str, Any], names: dict[str, str]) -> dict[str, Any]:
    """`fields` with the keys in `names` renamed, in order; a renamed key wins over a key
    that already has the new name."""
    shadowed = {names[key] for key in fields if key in names}
    renamed = {}
    for key, value in fields.items():
        target = names.get(key)
        if target is not None:
            renamed[target] = value
        elif key not in shadowed:
            renamed[key] = value
    return renamed


def as_dict(value: Any) -> dict:
    return value if isinstance(value, dict) else {}
