"""Config loading: the shipped file, ${VAR} interpolation, path-named errors, `trackgate check`."""

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from gateway.config import ConfigError, load, parse

ROOT = Path(__file__).resolve().parent.parent

BASE = {
    "sources": {"web": {"format": "segment", "keys": ["k1"], "destinations": ["archive"]}},
    "destinations": {"archive": {"type": "file", "settings": {"path": "out.jsonl"}}},
}


def with_changes(**changes):
    doc = yaml.safe_load(yaml.safe_dump(BASE))
    for dotted, value in changes.items():
        node = doc
        *parents, last = dotted.split("__")
        for part in parents:
            node = node.setdefault(part, {})
        node[last] = value
    return doc


def errors_of(doc, env=None) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        parse(doc, env or {})
    return caught.value.errors


def test_shipped_config_is_valid_with_an_empty_environment():
    config = load(ROOT / "config" / "gateway.yaml", env={})
    assert config.sources["web"].format == "segment"
    assert config.sources["web"].keys == ("dev-web-key",)
    assert config.store.backend == "sqlite"
    assert config.destinations["archive"].type == "file"
    assert not config.destinations["segment"].enabled


def test_defaults_fill_in():
    config = parse(BASE, {})
    assert config.server.port == 8088
    dest = config.destinations["archive"]
    assert (dest.enabled, dest.paused) == (True, False)
    assert dest.batch.max_events is None and dest.retry.policy().max_attempts == 12  # None: the API's own limit
    assert config.sources["web"].limits.resolve().max_event_bytes == 32 * 1024


def test_variables_are_filled_from_the_environment():
    doc = with_changes(sources__web__keys=["${KEY}", "${OTHER:-fallback}"])
    config = parse(doc, {"KEY": "from-env"})
    assert config.sources["web"].keys == ("from-env", "fallback")


def test_a_missing_variable_is_an_error_naming_its_path():
    errors = errors_of(with_changes(sources__web__keys=["${NOPE}"]))
    assert errors == ["sources.web.keys[0]: environment variable NOPE is not set"]


@pytest.mark.parametrize(
    "changes, expected",
    [
        ({"destinations__archive__colour": "red"}, "destinations.archive: Object contains unknown field `colour`"),
        ({"sources__web__format": "carrier-pigeon"}, "sources.web.format: unknown format 'carrier-pigeon'"),
        ({"destinations__archive__type": "fax"}, "destinations.archive.type: unknown type 'fax'"),
        ({"sources__web__destinations": ["archive", "nowhere"]}, "sources.web.destinations[1]: no destination named 'nowhere'"),
        ({"destinations__archive__settings": {}}, "destinations.archive.settings: Object missing required field `path`"),
        ({"destinations__archive__batch": {"max_events": "lots"}}, "destinations.archive.batch.max_events: Expected `int | null`, got `str`"),
        ({"sources__web__keys": []}, "sources.web.keys: at least one non-empty key is required"),
        ({"store__backend": "mongodb"}, "store.backend: Invalid enum value 'mongodb'"),
    ],
)
def test_errors_name_the_path(changes, expected):
    errors = errors_of(with_changes(**changes))
    assert any(e.startswith(expected) for e in errors), errors


def test_every_reference_problem_is_reported_at_once():
    doc = with_changes(sources__web__destinations=["a", "b"], sources__web__format="nope")
    assert len(errors_of(doc)) == 3


def run_check(path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "gateway", "check", str(path)], capture_output=True, text=True, cwd=ROOT, timeout=60
    )


def test_check_command_exit_codes(tmp_path):
    ok = run_check(ROOT / "config" / "gateway.yaml")
    assert ok.returncode == 0, ok.stderr
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump(with_changes(sources__web__destinations=["ghost"])))
    result = run_check(bad)
    assert result.returncode == 2
    assert "sources.web.destinations[0]: no destination named 'ghost'" in result.stderr
    missing = run_check(tmp_path / "absent.yaml")
    assert missing.returncode == 2 and "absent.yaml" in missing.stderr


def test_batch_max_events_zero_is_refused_and_none_means_the_api_limit():
    errors = errors_of(with_changes(destinations__archive__batch={"max_events": 0}))
    assert any(e.startswith("destinations.archive.batch: max_events must be positive") for e in errors), errors
    assert parse(with_changes(destinations__archive__batch={"max_bytes": 1000}), {}).destinations["archive"].batch.max_events is None
