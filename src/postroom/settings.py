"""Settings from the environment (all optional). Built by :func:`get_settings`, never at import."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field
from pydantic import ValidationError as PydanticValidationError
from pydantic_settings import BaseSettings, SettingsConfigDict

__all__ = ["Settings", "get_settings"]


class Settings(BaseSettings):
    """Postroom's configuration; every field maps to ``POSTROOM_<NAME>``."""

    model_config = SettingsConfigDict(env_prefix="POSTROOM_", extra="ignore")

    data_dir: Path = Field(default=Path(".postroom"))
    database_url: str | None = None
    secret_keys: str | None = None
    public_url: str | None = None
    host: str = "127.0.0.1"
    port: int = Field(default=8600, ge=1, le=65535)
    net_deny: str = ""
    net_allow: str = ""
    net_ports: str = ""
    #: CIDRs action webhooks may reach although internal (loopback, private); see security.md
    action_webhook_allow: str = ""
    #: ``hardened`` also denies loopback, private and shared (CGNAT) addresses and allows
    #: only mail ports (and 443 for OAuth2 and the API transports) unless net_ports is set
    net_profile: Literal["default", "hardened"] = "default"
    #: ``disabled`` refuses connection tests on every surface (REST, web UI, CLI, Python)
    connection_tests: Literal["enabled", "disabled"] = "enabled"
    log_level: str = "info"
    #: days a sent, failed, bounced or cancelled message is kept (with its body and
    #: attempts) before workers delete it; 0 keeps everything
    outbox_retention_days: int = Field(default=30, ge=0, le=3650)
    #: a profile that is not the default, bound to no process and unused this many days
    #: is flagged "unused" (a candidate to disable or delete)
    profile_unused_days: int = Field(default=90, ge=1, le=3650)
    #: days a received message whose subscribers all succeeded (or a quarantined one) is
    #: kept, with its attachments, before serve / inbound run delete it; 0 keeps everything
    inbound_retention_days: int = Field(default=30, ge=0, le=3650)
    #: limits on what callers send (docs/security.md, "Limits on what callers send"):
    #: request bodies (fits one message at the 25 MiB limit once base64-encoded), …
    max_request_bytes: int = Field(default=36 * 2**20, ge=1024, le=2**31)
    #: … to, cc and bcc together per message, recipients per action, action bodies
    max_recipients_per_message: int = Field(default=500, ge=1, le=100_000)
    max_action_recipients: int = Field(default=100, ge=1, le=10_000)
    max_action_body_bytes: int = Field(default=512 * 1024, ge=1024, le=25 * 2**20)
    #: REST sends are refused (503, Retry-After) while more messages than this wait to be
    #: sent (docs/api.md, "Backpressure"); 0: never
    outbox_max_depth: int = Field(default=100_000, ge=0, le=10**9)
    #: secret references an administrator (REST, web UI) may store: comma-separated
    #: variable names (``SMTP_*`` matches a prefix) and absolute directory prefixes.
    #: The operator's CLI may reference anything except postroom's own keys.
    secret_ref_env: str = ""
    secret_ref_paths: str = ""
    #: addresses/CIDRs of reverse proxies whose X-Forwarded-For/-Proto are believed
    trusted_proxies: str = ""
    #: seconds a client has to send a whole request head (slow, trickling clients are cut)
    header_timeout_s: float = Field(default=10.0, gt=0, le=600)
    #: open connections per client address (trusted proxies exempt); 0 = no limit
    max_connections_per_client: int = Field(default=50, ge=0)
    #: open connections and requests in all; past it, 503; 0 = no limit
    max_connections: int = Field(default=1000, ge=0)
    #: limits on each part of a mail template (see docs/notifications.md, "Limits")
    template_max_source_chars: int = Field(default=64 * 1024, ge=100, le=10 * 2**20)
    template_max_tags: int = Field(default=2000, ge=10, le=100_000)
    template_compile_timeout_s: float = Field(default=2.0, gt=0, le=600)
    template_max_output_chars: int = Field(default=2 * 2**20, ge=1000, le=100 * 2**20)
    template_render_timeout_s: float = Field(default=5.0, gt=0, le=600)
    template_max_memory_mb: int = Field(default=256, ge=16, le=64 * 1024)
    #: settings detection (docs/profiles.md): resolvers to ask (``addr[:port]``, comma-
    #: separated; empty = /etc/resolv.conf), each lookup's timeout, autoconfig's HTTP ports
    dns_servers: str = ""
    #: SMTP, IMAP and OAuth2 token connections through a proxy: socks5://[user@]host:port
    #: or http://[user@]host:port (HTTP CONNECT); the password in proxy_password
    proxy: str = ""
    proxy_password: str = Field(default="", repr=False)
    detect_timeout_s: float = Field(default=3.0, gt=0, le=60)
    detect_http_port: int = Field(default=80, ge=1, le=65535)
    detect_https_port: int = Field(default=443, ge=1, le=65535)

    @property
    def resolved_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite:///{(self.data_dir / 'postroom.db').resolve()}"

    @property
    def key_file(self) -> Path:
        return self.data_dir / "secret.key"


def get_settings(**overrides: object) -> Settings:
    """Read the environment; keyword overrides win (``None`` values are ignored)."""
    from postroom.errors import ConfigurationError

    clean = {k: v for k, v in overrides.items() if v is not None}
    try:
        return Settings(**clean)  # type: ignore[arg-type]
    except PydanticValidationError as exc:
        # name the variable, never a traceback: "POSTROOM_PORT: Input should be …"
        problems = "; ".join(
            f"POSTROOM_{str(e['loc'][0]).upper()}: {e['msg']}" if e["loc"] else e["msg"]
            for e in exc.errors()
        )
        raise ConfigurationError(f"invalid environment: {problems}") from None
