"""The `trackgate` command line: help, send, stats against a live gateway."""

import json
import subprocess
import sys

import pytest

from tests.gatewayproc import GatewayProcess, wait_until

KEY = "cli-key"


def trackgate(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "gateway", *args], capture_output=True, text=True, timeout=60, cwd=cwd)


def test_help_lists_every_command():
    result = trackgate("--help")
    assert result.returncode == 0
    for command in ("serve", "check", "send", "stats", "rejected", "dlq"):
        assert command in result.stdout
    dlq = trackgate("dlq", "--help")
    for action in ("list", "show", "replay", "purge"):
        assert action in dlq.stdout
    assert trackgate().returncode == 2  # no command: usage error


DIALECTS = ("segment", "amplitude", "thrivestack", "tranthor")


@pytest.fixture
def gateway(tmp_path):
    config = {
        "sources": {
            "web": {"format": "segment", "keys": [KEY], "destinations": ["archive"]},
            # one source per other dialect, keyed by its name
            **{fmt: {"format": fmt, "keys": [f"{fmt}-key"], "destinations": ["archive"]} for fmt in DIALECTS[1:]},
        },
        "destinations": {"archive": {"type": "file", "settings": {"path": "events.jsonl"}, "batch": {"max_wait_ms": 10}}},
    }
    with GatewayProcess(tmp_path, config) as gw:
        yield gw


@pytest.mark.parametrize("kind", ["identify", "track", "page", "screen", "group", "alias"])
def test_send_posts_each_call_type(gateway, kind):
    result = trackgate("send", "--url", gateway.url, "--key", KEY, "--type", kind, "--message-id", f"cli-{kind}")
    assert result.returncode == 0, result.stderr
    assert f"POST /v1/{kind} -> 200" in result.stdout
    out = gateway.workdir / "events.jsonl"
    line = wait_until(lambda: out.exists() and out.read_text().strip())
    event = json.loads(line.splitlines()[-1])
    assert (event["type"], event["messageId"]) == (kind, f"cli-{kind}")


@pytest.mark.parametrize("fmt", DIALECTS[1:])
@pytest.mark.parametrize("kind", ["identify", "track", "group"])
def test_send_speaks_every_dialect(gateway, fmt, kind):
    message_id = f"cli-{fmt}-{kind}"
    result = trackgate("send", "--url", gateway.url, "--format", fmt, "--key", f"{fmt}-key", "--type", kind,
                       "--message-id", message_id)
    assert result.returncode == 0, result.stdout + result.stderr
    out = gateway.workdir / "events.jsonl"
    line = wait_until(lambda: out.exists() and message_id in out.read_text() and out.read_text())
    (event,) = [json.loads(x) for x in line.splitlines() if message_id in x]
    assert (event["type"], event["source"], event["userId"]) == (kind, fmt, "trackgate-test-user")


def test_send_reports_a_refusal(gateway):
    result = trackgate("send", "--url", gateway.url, "--key", "wrong")
    assert result.returncode == 1 and "401" in result.stdout


def test_stats_shows_delivery_counts(gateway):
    assert trackgate("send", "--url", gateway.url, "--key", KEY).returncode == 0
    wait_until(lambda: json.loads(gateway.cli("stats", "--json").stdout)["destinations"]["archive"]["counters"].get("delivered"))
    table = gateway.cli("stats").stdout
    assert "archive" in table and "delivered" in table
