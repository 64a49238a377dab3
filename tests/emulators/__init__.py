"""Emulators of the vendor APIs trackgate delivers to: real aiohttp servers on 127.0.0.1."""

from tests.emulators.base import Attempt, Emulator
from tests.emulators.segment_api import SegmentEmulator, basic_auth
from tests.emulators.webhook_receiver import WebhookReceiver, sign, verify_signature

__all__ = ["Attempt", "Emulator", "SegmentEmulator", "WebhookReceiver", "basic_auth", "sign", "verify_signature"]
