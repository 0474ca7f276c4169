"""Orchestra's one typed configuration, and the only module that reads the environment.

Sources, highest priority first: keyword arguments (tests, the CLI's options), environment
variables prefixed ``ORCHESTRA_``, one file per secret in the directory named by
``ORCHESTRA_SECRETS_DIR`` (Compose and Kubernetes secrets: a file ``orchestra_master_key``
holds what ``ORCHESTRA_MASTER_KEY`` would), the TOML file named by ``ORCHESTRA_CONFIG`` (see
``config/orchestra.example.toml``), then the defaults below. Unknown keys in the TOML file are
an error, so a misspelt setting fails loudly instead of being ignored.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Literal

from pydantic import (
    AliasChoices,
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    model_validator,
)
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SecretsSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from gateway.core.errors import ConfigurationError

CONFIG_ENV = "ORCHESTRA_CONFIG"
SECRETS_DIR_ENV = "ORCHESTRA_SECRETS_DIR"
DATABASE_FILE = "orchestra.db"
MASTER_KEY_FILE = "master.key"


class ModelPrice(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    input_per_million: float = Field(ge=0)
    output_per_million: float = Field(ge=0)


#: USD per million tokens (OpenAI's list prices); extend or override in the configuration.
DEFAULT_PRICES: dict[str, ModelPrice] = {
    name: ModelPrice(input_per_million=i, output_per_million=o)
    for name, i, o in (
        ("gpt-4o-mini", 0.15, 0.60),
        ("gpt-4o", 2.50, 10.00),
        ("gpt-4.1", 2.00, 8.00),
        ("gpt-4.1-mini", 0.40, 1.60),
        ("gpt-4.1-nano", 0.10, 0.40),
        ("o4-mini", 1.10, 4.40),
    )
}


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="ORCHESTRA_", extra="forbid", frozen=True, validate_default=True
    )

    # Where orchestra.db and master.key live when nothing else is configured.
    home: Path = Path(".orchestra")
    # SQLAlchemy async URL; default: SQLite in `home`. PostgreSQL: postgresql+asyncpg://...
    database_url: str | None = None
    # PostgreSQL only: the schema (search_path) holding Orchestra's tables; default: public.
    # A plain name (letters, digits, _; PostgreSQL folds it to lower case); init creates it.
    database_schema: str | None = Field(default=None, pattern=r"^[A-Za-z_][A-Za-z0-9_]{0,62}$")
    # One or more Fernet keys, comma separated: the first encrypts, all decrypt.
    # When unset, $ORCHESTRA_HOME/master.key is used (created by `orchestra init`).
    master_key: SecretStr | None = None
    # Shared state between replicas (quotas, live logs); optional.
    redis_url: str | None = None
    # Bearer token of the operator on admin routes (all apps' logs); optional.
    admin_token: SecretStr | None = None

    # Upstream defaults for new apps.
    default_base_url: str = "https://api.openai.com/v1"
    default_model: str = "gpt-4o-mini"
    default_max_output_tokens: int = Field(default=1024, gt=0)

    # Upstream hosts allowed over plain http or on private addresses (SSRF rules otherwise:
    # https only, loopback excepted; private, link-local and metadata addresses refused).
    allowed_upstream_hosts: tuple[str, ...] = ()

    # Egress through an HTTP forward proxy (http://[user:password@]host[:port]; https upstreams
    # go through CONNECT tunnels, TLS checked end to end). `upstream_proxy_url` wins over the
    # standard HTTPS_PROXY / HTTP_PROXY variables, which are read as they are (no ORCHESTRA_
    # prefix), as is NO_PROXY: hosts, .domains, IPs, CIDRs, host:port, or * reached directly.
    # The proxy's credentials become Proxy-Authorization and are never logged.
    upstream_proxy_url: SecretStr | None = None
    https_proxy: SecretStr | None = Field(None, validation_alias=AliasChoices("https_proxy"))
    http_proxy: SecretStr | None = Field(None, validation_alias=AliasChoices("http_proxy"))
    no_proxy: str | None = Field(None, validation_alias=AliasChoices("no_proxy"))
    # A PEM file of the CAs that verify upstream (and OpenID provider) TLS; default: certifi's.
    upstream_ca_bundle: Path | None = None

    # Upstream timeouts, in seconds.
    connect_timeout_s: float = Field(default=5.0, gt=0)
    first_token_timeout_s: float = Field(default=60.0, gt=0)
    idle_timeout_s: float = Field(default=60.0, gt=0)
    # The largest upstream stream event (its data plus the line being read), in bytes.
    upstream_max_event_bytes: int = Field(default=1_048_576, gt=0)

    # Before the first byte: bounded retries (connect errors, 5xx, 429) within a deadline,
    # then the app's fallback models. A circuit breaker per upstream URL fails fast after
    # repeated failures, for a cool-down.
    upstream_attempts: int = Field(default=3, ge=1)
    upstream_retry_deadline_s: float = Field(default=20.0, gt=0)
    circuit_failure_threshold: int = Field(default=5, ge=1)
    circuit_cooldown_s: float = Field(default=10.0, gt=0)

    # Request limits.
    max_body_bytes: int = Field(default=1_048_576, gt=0)
    max_prompt_chars: int = Field(default=200_000, gt=0)
    max_messages: int = Field(default=256, gt=0)
    max_metadata_bytes: int = Field(default=4096, gt=0)
    # Request heads, counted before they are parsed: 431 beyond the whole head's bytes (request
    # line and header fields) or field count, 414 beyond the request line's bytes.
    max_header_bytes: int = Field(default=65_536, gt=0)
    max_headers: int = Field(default=100, gt=0)
    max_request_line_bytes: int = Field(default=8192, gt=0)

    # On SIGTERM, open streams get this long to finish, then end with `error` shutting_down.
    shutdown_drain_s: float = Field(default=5.0, ge=0)
    # An idle client connection is closed after this long (uvicorn's timeout_keep_alive); also
    # on SIGTERM, so that a request just written onto it is answered, not reset. A proxy in
    # front must close its idle connections to the gateway sooner (config/nginx: 4 s).
    keep_alive_s: int = Field(default=5, ge=1, le=3600)

    # Streaming: a `: ping` comment while the upstream is silent.
    ping_interval_s: float = Field(default=15.0, gt=0)
    # Resumable answers (`GET /ask/{id}/events`). When the last reader of an answer leaves, it
    # keeps being generated this long for a reader to come back; then the upstream is cancelled
    # (0: at once). An ended answer can be replayed this long after its end (then 410).
    stream_detach_grace_s: float = Field(default=30.0, ge=0, le=3600)
    stream_retention_s: float = Field(default=300.0, gt=0, le=86_400)
    # The events kept per answer for replay (the oldest are dropped past it), and for all
    # answers of this process together: past that, ended answers are evicted oldest first.
    stream_buffer_max_bytes: int = Field(default=1_048_576, ge=1024)
    stream_memory_max_bytes: int = Field(default=268_435_456, ge=1024)
    # How long an authenticated token is trusted before it is looked up again.
    auth_cache_ttl_s: float = Field(default=1.0, ge=0)
    # How often each gateway process reads the auth epochs of the apps it has cached: a revoked
    # token, a disabled or removed app is refused within this (at once with Redis).
    auth_epoch_poll_s: float = Field(default=1.0, gt=0, le=60)
    # OpenID Connect: a token naming an unknown key refetches the provider's keys at most this
    # often per provider (its key rotation then just works; a flood of forged kids costs one).
    oidc_key_refetch_s: float = Field(default=60.0, gt=0, le=3600)
    # Interaction records are written in batches, off the request path.
    log_batch_size: int = Field(default=200, gt=0)
    log_flush_interval_s: float = Field(default=0.2, gt=0)
    # Interaction records older than this are deleted by the gateway (hourly); 0 keeps all.
    log_retention_days: int = Field(default=90, ge=0)

    # Quotas. A reservation is a lease: if its replica dies, it expires after this long. A live
    # answer's lease is renewed every third of it (one batched heartbeat per process), so a
    # long or silent answer keeps it and a dead replica's apps recover within this time.
    reservation_ttl_s: float = Field(default=30.0, gt=0)
    # When Redis cannot be reached: request-rate limits fail open (admit), token, cost and
    # concurrency limits fail closed (503 quota_unavailable). Each is configurable.
    quota_requests_on_redis_down: Literal["fail_open", "fail_closed"] = "fail_open"
    quota_tokens_on_redis_down: Literal["fail_open", "fail_closed"] = "fail_closed"
    # Every Redis call (connect, command) is bounded by this, in seconds; past it Redis counts
    # as down and the policies above apply at once.
    redis_timeout_s: float = Field(default=0.25, gt=0)
    # Prices per model, USD per million tokens, for the monthly budgets.
    prices: dict[str, ModelPrice] = Field(default_factory=lambda: dict(DEFAULT_PRICES))

    # The answer cache (per app: `orchestra apps update APP --cache-ttl 10m`): the most bytes
    # of answers kept, per process in memory, or in total in Redis when redis_url is set.
    cache_max_bytes: int = Field(default=64 * 1024 * 1024, gt=0)

    # Workflows: the `conversation` workflow sends at most this many prompt tokens upstream
    # (system prompt, kept history, new message); the oldest turns are dropped first.
    conversation_token_budget: int = Field(default=8000, gt=0)

    # Metrics: GET /metrics needs this bearer token when set (else: restrict by bind address).
    metrics_token: SecretStr | None = None
    # Set by `orchestra serve --workers N` (N > 1): where the workers share their metrics.
    metrics_multiprocess_dir: Path | None = None

    # Tracing: the OTLP/HTTP (protobuf) collector that gets a span per answered request, e.g.
    # http://otel-collector:4318 (``/v1/traces`` is appended unless the URL ends with it).
    # Unset: nothing is traced, and the OpenTelemetry SDK is not even imported.
    otlp_endpoint: str | None = Field(default=None, pattern=r"^https?://[^\s]+$")
    # Spans are exported in batches: at most this long after they end (and all at shutdown).
    otlp_batch_delay_s: float = Field(default=5.0, gt=0, le=60)

    # Logging.
    log_level: Literal["TRACE", "DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    log_format: Literal["human", "json"] = "human"
    # Also write the log to this file (JSON lines), rotated and pruned as below.
    log_file: Path | None = None
    log_rotation: str = "100 MB"
    log_retention: str = "14 days"

    # Built Angular demo to serve at `/` (optional).
    ui_dir: Path | None = None

    @model_validator(mode="after")
    def _stream_bounds(self) -> Settings:
        if self.stream_buffer_max_bytes > self.stream_memory_max_bytes:
            raise ValueError(
                "stream_buffer_max_bytes must not exceed stream_memory_max_bytes "
                "(one answer's events must fit in the memory for all of them)."
            )
        return self

    @property
    def resolved_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite+aiosqlite:///{(self.home / DATABASE_FILE).resolve()}"

    @property
    def master_key_file(self) -> Path:
        return self.home / MASTER_KEY_FILE

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,  # noqa: ARG003 (explicit sources only)
        file_secret_settings: PydanticBaseSettingsSource,  # noqa: ARG003
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings]
        secrets_dir = os.environ.get(SECRETS_DIR_ENV)
        if secrets_dir:
            # Files, not environment variables: a container's environment is readable by
            # anyone who may inspect it; a mounted secret is not.
            sources.append(SecretsSettingsSource(settings_cls, secrets_dir=secrets_dir))
        config_file = os.environ.get(CONFIG_ENV)
        if config_file:
            sources.append(TomlConfigSettingsSource(settings_cls, toml_file=Path(config_file)))
        return tuple(sources)


def load_settings(**overrides: Any) -> Settings:
    """Build the settings once, at an entry point; pass the object down from there.

    Keyword arguments set to None are ignored, so CLI options can be passed straight through.
    """
    config_file = os.environ.get(CONFIG_ENV)
    if config_file and not Path(config_file).is_file():
        raise ConfigurationError(f"{CONFIG_ENV} names {config_file!r}, which is not a file.")
    secrets_dir = os.environ.get(SECRETS_DIR_ENV)
    if secrets_dir and not Path(secrets_dir).is_dir():
        raise ConfigurationError(
            f"{SECRETS_DIR_ENV} names {secrets_dir!r}, which is not a directory."
        )
    try:
        return Settings(**{key: value for key, value in overrides.items() if value is not None})
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(part) for part in error['loc']) or 'settings'}: {error['msg']}"
            for error in exc.errors()
        )
        raise ConfigurationError(f"Invalid configuration: {problems}.") from None
    except ValueError as exc:  # e.g. a TOML syntax error
        raise ConfigurationError(f"Invalid configuration file: {exc}.") from None


def export_to_environment(values: dict[str, str]) -> None:
    """Hand settings to server worker processes, which build their own from the environment."""
    for key, value in values.items():
        os.environ[f"ORCHESTRA_{key.upper()}"] = value


def export_raw_environment(values: dict[str, str]) -> None:
    """Variables other libraries read themselves (prometheus-client's multiprocess dir)."""
    os.environ.update(values)


def environment_without_orchestra() -> dict[str, str]:
    """The process environment minus ORCHESTRA_* (for child processes with their own config)."""
    return {k: v for k, v in os.environ.items() if not k.startswith("ORCHESTRA_")}
