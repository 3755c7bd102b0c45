"""Configuration from ``LIVECAST_*`` environment variables and an optional TOML file.

Every setting is read once at start-up into an immutable :class:`Settings`. A wrong value
stops start-up with :class:`ConfigError`, whose message names the variable, because an
operator reading a traceback to find a typo in a port number is a bad first experience.
"""

from __future__ import annotations

import os
import tomllib
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

ENV_PREFIX = "LIVECAST_"

ALL_ROLES = ("api", "web", "chat", "ingest", "worker")


class ConfigError(Exception):
    """A configuration value is missing or wrong; the message is one line for the operator."""


class Rendition(BaseModel):
    """One rung of the transcoding ladder."""

    model_config = ConfigDict(frozen=True)

    name: str
    height: int = 0  # 0: source (passthrough)
    fps: int = 0  # 0: source frame rate
    video_kbps: int = 0
    audio_kbps: int = 160
    audio_only: bool = False
    cost: int = 1


DEFAULT_LADDER: tuple[Rendition, ...] = (
    Rendition(name="source", cost=0),
    Rendition(name="720p60", height=720, fps=60, video_kbps=3000, cost=4),
    Rendition(name="480p30", height=480, fps=30, video_kbps=1500, cost=2),
    Rendition(name="360p30", height=360, fps=30, video_kbps=800, cost=1),
    Rendition(name="160p30", height=160, fps=30, video_kbps=400, cost=1),
    Rendition(name="audio_only", audio_only=True, audio_kbps=160, cost=0),
)


class Settings(BaseModel):
    """The whole configuration of one Livecast process."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    data_dir: Path = Path("./var")
    database_url: str = ""
    bus_url: str = "memory://"
    storage_url: str = ""
    host: str = "127.0.0.1"
    http_port: int = Field(default=8080, ge=0, le=65535)
    rtmp_port: int = Field(default=1935, ge=0, le=65535)
    irc_port: int = Field(default=6667, ge=0, le=65535)
    roles: tuple[str, ...] = ALL_ROLES
    public_url: str = ""
    node_name: str = ""  # this node's name in the stream registry and logs (default: host:port)
    # Where CDN edges reach this node's HLS origin (default http://<host>:<http port>); an
    # ingest node registers it for each stream it holds, for ``registry_ttl`` seconds at a time.
    origin_url: str = ""
    registry_ttl: float = Field(default=10.0, ge=1, le=300)
    # On SIGTERM, how long this node keeps serving what it has before ending it (an ingest node
    # keeps its current streams and takes no new ones); a second signal ends it at once. 0: at once.
    drain_timeout: float = Field(default=0.0, ge=0)
    log_level: str = "INFO"
    log_format: str = "text"
    secret_key: str = ""
    reconnect_window: float = Field(default=60.0, ge=0)
    rtmp_max_connections_per_ip: int = Field(default=10, ge=1)
    rtmp_idle_timeout: float = Field(default=10.0, gt=0)  # seconds without a byte from a publisher
    # Abuse limits (livecast.limits): per client address, loopback exempt unless told otherwise
    chat_max_connections_per_ip: int = Field(default=200, ge=1)  # IRC over TCP and WebSocket together
    chat_login_timeout: float = Field(default=30.0, gt=0)  # seconds from connect to a finished login
    # Threads writing a big room's pass (chat/sendpool.py); 0: 1 on two cores or fewer, else up to 4
    chat_send_threads: int = Field(default=0, ge=0, le=64)
    http_max_connections_per_ip: int = Field(default=256, ge=1)
    http_max_body_bytes: int = Field(default=1 << 20, ge=1024)
    http_header_timeout: float = Field(default=30.0, gt=0)  # seconds to send a request's headers
    http_write_timeout: float = Field(default=60.0, gt=0)  # seconds a client may leave our writes unread
    hls_max_blocking_requests: int = Field(default=10000, ge=1)  # LL-HLS long polls held at once
    limit_exempt_ips: tuple[str, ...] = ("127.0.0.1", "::1")
    # Media
    segment_duration: float = Field(default=2.0, gt=0.2, le=12)
    part_duration: float = Field(default=0.5, gt=0.05, le=4)
    transcode_capacity: int = Field(default=8, ge=0)
    non_partner_ladder: tuple[str, ...] = ("source", "audio_only")
    ladder: tuple[Rendition, ...] = DEFAULT_LADDER
    ffmpeg: str = "ffmpeg"
    playlist_window: int = Field(default=6, ge=3)
    # VODs and clips (livecast/vod, livecast/clips)
    vod_renditions: tuple[str, ...] = ()  # renditions archived; empty: every rendition the stream has
    vod_retention_days: int = Field(default=7, ge=0)  # archives of other channels; 0 keeps them forever
    vod_partner_retention_days: int = Field(default=60, ge=0)  # partners' archives
    vod_retention_interval: float = Field(default=300.0, gt=0)  # seconds between retention sweeps
    archive_queue_bytes: int = Field(default=256 * 1024 * 1024, ge=1024 * 1024)  # pending uploads per node
    # segments waiting for storage on the node's disk (<data dir>/archive-spool); 0: memory only
    archive_spool_bytes: int = Field(default=4 * 1024 * 1024 * 1024, ge=0)
    clip_buffer_seconds: float = Field(default=90.0, ge=10)  # recent source media kept in memory per stream
    # API
    helix_rate_limit: int = Field(default=800, ge=1)
    eventsub_allow_private_callbacks: bool = False
    # Domain events kept in the bus's event stream for a dispatcher that is away (approximate)
    event_stream_maxlen: int = Field(default=100_000, ge=1000)
    # Identity
    token_lifetime: int = Field(default=14400, ge=60)
    password_min_length: int = Field(default=8, ge=1)
    # Subscriptions (prices in the currency's minor unit; partners get partner_share_percent)
    sub_prices: dict[str, int] = Field(default_factory=lambda: {"1000": 499, "2000": 999, "3000": 2499})
    sub_currency: str = "USD"
    creator_share_percent: int = Field(default=50, ge=0, le=100)
    partner_share_percent: int = Field(default=70, ge=0, le=100)
    stripe_secret_key: str = ""
    stripe_webhook_secret: str = ""
    stripe_api_base: str = "https://api.stripe.com"

    @field_validator("database_url", "bus_url", "storage_url")
    @classmethod
    def _url_scheme(cls, value: str, info: Any) -> str:
        if not value:
            return value
        scheme = urlsplit(value).scheme
        allowed = {
            "database_url": {"sqlite", "sqlite+aiosqlite", "postgresql", "postgres", "postgresql+asyncpg"},
            "bus_url": {"memory", "redis", "rediss"},
            "storage_url": {"file", "s3"},
        }[info.field_name]
        if scheme not in allowed:
            raise ValueError(f"unsupported scheme {scheme!r}; use one of {', '.join(sorted(allowed))}")
        return value

    @field_validator("roles", mode="before")
    @classmethod
    def _roles(cls, value: Any) -> Any:
        if isinstance(value, str):
            value = [r.strip() for r in value.split(",") if r.strip()]
        if not value:
            raise ValueError("at least one role is needed")
        for role in value:
            if role == "all":
                return ALL_ROLES
            if role not in ALL_ROLES:
                raise ValueError(f"unknown role {role!r}; use {', '.join(ALL_ROLES)} or all")
        return tuple(value)

    @field_validator("non_partner_ladder", "limit_exempt_ips", mode="before")
    @classmethod
    def _names(cls, value: Any) -> Any:
        if isinstance(value, str):
            return tuple(r.strip() for r in value.split(",") if r.strip())
        return value

    @field_validator("limit_exempt_ips")
    @classmethod
    def _exempt(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        # An empty environment variable means "unset", so "none" is how to exempt nobody.
        return tuple(ip for ip in value if ip.lower() != "none")

    @field_validator("vod_renditions", mode="before")
    @classmethod
    def _vod_renditions(cls, value: Any) -> Any:
        if isinstance(value, str):
            return tuple(r.strip() for r in value.split(",") if r.strip())
        return value

    @field_validator("log_level")
    @classmethod
    def _level(cls, value: str) -> str:
        value = value.upper()
        if value not in {"DEBUG", "INFO", "WARNING", "ERROR"}:
            raise ValueError("use DEBUG, INFO, WARNING or ERROR")
        return value

    @field_validator("part_duration")
    @classmethod
    def _part(cls, value: float, info: Any) -> float:
        seg = info.data.get("segment_duration")
        if seg is not None and value > seg:
            raise ValueError("must not exceed LIVECAST_SEGMENT_DURATION")
        return value

    # Derived values -------------------------------------------------------------------------
    @property
    def resolved_database_url(self) -> str:
        """The SQLAlchemy async URL; SQLite under the data dir unless configured."""
        url = self.database_url or f"sqlite:///{(self.data_dir / 'livecast.db').resolve()}"
        scheme, _, rest = url.partition("://")
        if scheme == "sqlite":
            return f"sqlite+aiosqlite://{rest}"
        if scheme in {"postgresql", "postgres"}:
            return f"postgresql+asyncpg://{rest}"
        return url

    @property
    def resolved_storage_url(self) -> str:
        return self.storage_url or f"file://{(self.data_dir / 'storage').resolve()}"

    @property
    def is_postgres(self) -> bool:
        return self.resolved_database_url.startswith("postgresql")

    def has_role(self, role: str) -> bool:
        return role in self.roles

    def base_url(self, port: int | None = None) -> str:
        if self.public_url:
            return self.public_url.rstrip("/")
        host = "127.0.0.1" if self.host in {"0.0.0.0", "::", ""} else self.host
        return f"http://{host}:{port if port is not None else self.http_port}"


def _field_env_names() -> dict[str, str]:
    return {ENV_PREFIX + name.upper(): name for name in Settings.model_fields}


def load_settings(environ: dict[str, str] | None = None, **overrides: Any) -> Settings:
    """Build settings from a TOML file (``LIVECAST_CONFIG``), the environment and overrides.

    Later sources win: file, then environment, then explicit overrides (CLI flags).
    """
    env = dict(os.environ if environ is None else environ)
    values: dict[str, Any] = {}
    config_file = env.get(ENV_PREFIX + "CONFIG")
    if config_file:
        try:
            with open(config_file, "rb") as fh:
                data = tomllib.load(fh)
        except OSError as exc:
            raise ConfigError(f"LIVECAST_CONFIG: cannot read {config_file}: {exc.strerror}") from None
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"LIVECAST_CONFIG: {config_file} is not valid TOML: {exc}") from None
        data = data.get("livecast", data)
        for key, value in data.items():
            if key not in Settings.model_fields:
                raise ConfigError(f"LIVECAST_CONFIG: unknown setting {key!r} in {config_file}")
            values[key] = value
    names = _field_env_names()
    for env_name, field in names.items():
        if env_name in env and env[env_name] != "":
            raw = env[env_name]
            if field == "ladder":
                raise ConfigError("LIVECAST_LADDER: set the ladder in the LIVECAST_CONFIG TOML file")
            values[field] = raw
    if "LIVECAST_ROLE" in env and "roles" not in values:
        values["roles"] = env["LIVECAST_ROLE"]
    values.update({k: v for k, v in overrides.items() if v is not None})
    try:
        return Settings.model_validate(values)
    except ValidationError as exc:
        err = exc.errors()[0]
        field = str(err["loc"][0]) if err["loc"] else "?"
        msg = err["msg"].removeprefix("Value error, ")
        given = values.get(field)
        shown = f" (got {given!r})" if given is not None and field != "secret_key" else ""
        raise ConfigError(f"{ENV_PREFIX}{field.upper()}: {msg}{shown}") from None
