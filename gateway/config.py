"""The YAML config: typed msgspec Structs, ${VAR} interpolation, path-named errors."""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

import msgspec
import yaml

from gateway import registry
from gateway.adapter import SourceLimits
from gateway.retry import RetryPolicy


class ConfigError(Exception):
    """An invalid config: `errors` are "path: problem" lines."""

    def __init__(self, errors: list[str]):
        super().__init__("\n".join(errors))
        self.errors = errors


class Strict(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    pass


class ServerConfig(Strict):
    host: str = "127.0.0.1"
    port: int = 8088
    admin_token: str | None = None  # enables /admin/* when set
    cors_origins: tuple[str, ...] = ("*",)
    trust_proxy_headers: bool = False  # take the client IP from X-Forwarded-For


class StoreConfig(Strict):
    backend: Literal["sqlite"] = "sqlite"
    path: str = "data/trackgate.db"
    dedupe_window_s: float = 86400.0
    dedupe_max_ids: int = 2_000_000  # memory bound (~200 B an id): the newest ids are kept
    max_backlog_bytes: int = 1 << 30


class LimitsConfig(Strict):
    """`limits:` of a source. A field left out takes the format's default (its adapter's
    DEFAULT_LIMITS: the vendor's own limits), else SourceLimits' (Segment's)."""

    max_event_bytes: int | None = None
    max_request_bytes: int | None = None
    max_events: int | None = None

    def __post_init__(self):
        if any(v is not None and v <= 0 for v in msgspec.structs.astuple(self)):
            raise ValueError("limits must be positive")

    def resolve(self, defaults: SourceLimits | None = None) -> SourceLimits:
        chosen = msgspec.structs.asdict(defaults or SourceLimits())
        chosen.update({k: v for k, v in msgspec.structs.asdict(self).items() if v is not None})
        return SourceLimits(**chosen)


class SourceConfig(Strict):
    format: str
    keys: tuple[str, ...]
    destinations: tuple[str, ...] = ()
    limits: LimitsConfig = LimitsConfig()


class FilterConfig(Strict):
    types: tuple[str, ...] = ()  # empty: every type
    events_include: tuple[str, ...] = ()  # empty: every event name
    events_exclude: tuple[str, ...] = ()


class BatchConfig(Strict):
    max_events: int | None = None  # None: as many as the destination's API takes per request
    max_bytes: int = 500_000
    max_wait_ms: int = 500
    max_in_flight: int = 4

    def __post_init__(self):
        if self.max_events is not None and self.max_events <= 0:
            raise ValueError("max_events must be positive (or left out: the API's own limit)")
        if min(self.max_bytes, self.max_in_flight) <= 0 or self.max_wait_ms < 0:
            raise ValueError("batch sizes must be positive")


class RetryConfig(Strict):
    """`retry:` of a destination. A field left out takes the destination type's default
    (its adapter's DEFAULT_RETRY), else RetryPolicy's (12 attempts and 4 hours)."""

    max_attempts: int | None = None
    max_age_s: float | None = None
    backoff_base_s: float | None = None
    backoff_max_s: float | None = None

    def __post_init__(self):
        if any(v is not None and v < 0 for v in msgspec.structs.astuple(self)):
            raise ValueError("retry limits must not be negative")

    def policy(self, defaults: Mapping[str, Any] | None = None) -> RetryPolicy:
        chosen = {**(defaults or {})}
        chosen.update({k: v for k, v in msgspec.structs.asdict(self).items() if v is not None})
        return RetryPolicy(**chosen)


class DestinationConfig(Strict):
    type: str
    enabled: bool = True
    paused: bool = False
    settings: dict[str, Any] = {}
    filter: FilterConfig = FilterConfig()
    batch: BatchConfig = BatchConfig()
    retry: RetryConfig = RetryConfig()
    timeout_s: float = 10.0


class GatewayConfig(Strict):
    sources: dict[str, SourceConfig]
    destinations: dict[str, DestinationConfig] = {}
    server: ServerConfig = ServerConfig()
    store: StoreConfig = StoreConfig()

    def destination_settings(self, name: str) -> msgspec.Struct | None:
        """The destination's `settings`, validated by its adapter's Settings struct (None
        for a disabled destination: its settings are not checked)."""
        spec = self.destinations[name]
        if not spec.enabled:
            return None
        return msgspec.convert(spec.settings, registry.destination(spec.type).Settings)


class _Document(Strict):
    sources: dict[str, Any]
    destinations: dict[str, Any] = {}
    server: ServerConfig = ServerConfig()
    store: StoreConfig = StoreConfig()


def _convert_entries(entries: dict[str, Any], kind: type, section: str, errors: list[str]) -> dict:
    converted = {}
    for name, value in entries.items():
        try:
            converted[name] = msgspec.convert(value, kind)
        except msgspec.ValidationError as error:
            errors.append(_error_path(error, f"{section}.{name}"))
    return converted


_VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-(.*?))?\}")


def _interpolate(value: Any, path: str, env: dict[str, str], errors: list[str]) -> Any:
    if isinstance(value, str):

        def fill(match: re.Match) -> str:
            name, default = match.group(1), match.group(2)
            if name in env:
                return env[name]
            if default is not None:
                return default
            errors.append(f"{path}: environment variable {name} is not set")
            return ""

        return _VAR.sub(fill, value)
    if isinstance(value, dict):
        return {k: _interpolate(v, f"{path}.{k}" if path else str(k), env, errors) for k, v in value.items()}
    if isinstance(value, list):
        return [_interpolate(v, f"{path}[{i}]", env, errors) for i, v in enumerate(value)]
    return value


def _error_path(error: msgspec.ValidationError, prefix: str = "") -> str:
    """msgspec's "problem - at `$.a.b`" as "a.b: problem"."""
    text = str(error)
    message, _, where = text.rpartition(" - at `")
    if not message:
        return f"{prefix or '(top level)'}: {text}"
    where = where.rstrip("`").removeprefix("$").lstrip(".")
    path = ".".join(p for p in (prefix, where) if p)
    return f"{path or '(top level)'}: {message}"


def parse(data: Any, env: dict[str, str] | None = None) -> GatewayConfig:
    """Validate a decoded YAML document; raise ConfigError listing every problem found."""
    errors: list[str] = []
    data = _interpolate(data, "", dict(os.environ if env is None else env), errors)
    if errors:
        raise ConfigError(errors)
    if not isinstance(data, dict):
        raise ConfigError(["(top level): expected a mapping"])
    try:
        document = msgspec.convert(data, _Document)
    except msgspec.ValidationError as error:
        raise ConfigError([_error_path(error)]) from None
    # Entries one by one, so an error names the entry (msgspec says `[...]` for dict keys).
    sources = _convert_entries(document.sources, SourceConfig, "sources", errors)
    destinations = _convert_entries(document.destinations, DestinationConfig, "destinations", errors)
    if errors:
        raise ConfigError(errors)
    config = GatewayConfig(sources=sources, destinations=destinations, server=document.server, store=document.store)
    _check_references(config, errors)
    if errors:
        raise ConfigError(errors)
    return config


def _check_references(config: GatewayConfig, errors: list[str]) -> None:
    formats = registry.source_formats()
    types = registry.destination_types()
    for name, source in config.sources.items():
        if source.format not in formats:
            errors.append(f"sources.{name}.format: unknown format {source.format!r} (known: {', '.join(formats)})")
        if not source.keys or any(not key for key in source.keys):
            errors.append(f"sources.{name}.keys: at least one non-empty key is required")
        for i, dest in enumerate(source.destinations):
            if dest not in config.destinations:
                errors.append(f"sources.{name}.destinations[{i}]: no destination named {dest!r}")
    seen: dict[str, str] = {}
    for name, source in config.sources.items():
        for key in source.keys:
            if key and key in seen and seen[key] != name:
                errors.append(f"sources.{name}.keys: a key is shared with source {seen[key]!r}")
            seen.setdefault(key, name)
    for name, dest in config.destinations.items():
        if dest.type not in types:
            errors.append(f"destinations.{name}.type: unknown type {dest.type!r} (known: {', '.join(types)})")
            continue
        if not dest.enabled:
            continue  # a disabled destination's settings (its keys, say) may stay unset
        try:
            config.destination_settings(name)
        except msgspec.ValidationError as error:
            errors.append(_error_path(error, f"destinations.{name}.settings"))


def load(path: str | Path, env: dict[str, str] | None = None) -> GatewayConfig:
    try:
        text = Path(path).read_text()
    except OSError as error:
        raise ConfigError([f"{path}: {error.strerror}"]) from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as error:
        raise ConfigError([f"{path}: invalid YAML: {error}"]) from None
    return parse(data, env)
