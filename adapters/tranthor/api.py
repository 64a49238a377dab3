"""What both halves share: Dittofeed's API path, the integrations names, the JSON codecs."""

from __future__ import annotations

import msgspec

PREFIX = "/api/public/apps/"
INTEGRATION_NAMES = ("Tranthor", "Dittofeed")
EXTENSION = "Tranthor"  # integrations.Tranthor carries `files` and `assigned`

decode_json = msgspec.json.Decoder().decode
encode_json = msgspec.json.Encoder().encode
