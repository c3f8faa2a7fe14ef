"""Webhook subscriptions (stored) and delivering one signed POST through the network policy.

A webhook URL is an outbound connection like an SMTP server: its host is resolved once,
every address is judged by postroom's network policy, and the request goes to exactly an
address that was checked (the URL carries the IP; ``Host`` and, for https, SNI and the
certificate check use the name). Redirects are not followed — they would lead past the
check — and proxies from the environment are ignored for the same reason.

Errors of httpx and the resolver become a :class:`WebhookResult` here and nowhere else.
"""

from __future__ import annotations

import builtins
import time
from dataclasses import dataclass
from urllib.parse import quote, urlsplit, urlunsplit

import httpx
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from postroom.db.tables import Profile, utcnow
from postroom.errors import Conflict, FieldError, NotFound, ValidationError
from postroom.inbound.schemas import WebhookCreated, WebhookRead
from postroom.inbound.signing import new_secret, signature_headers
from postroom.inbound.tables import InboundWebhook
from postroom.net.policy import Denied, NetPolicy, check
from postroom.net.resolve import BlockedByPolicy, HostNotFound, ResolveTimeout, resolve
from postroom.net.tls import make_context
from postroom.profiles.service import name_key
from postroom.secrets import SecretBox

__all__ = [
    "WebhookResult",
    "WebhookTarget",
    "Webhooks",
    "post_webhook",
    "rotate_webhook_secrets",
]

_DETAIL_BYTES = 2048  # of a failed response's body, kept in the delivery log


@dataclass(frozen=True)
class WebhookTarget:
    """A webhook ready to call: its signing secret decrypted."""

    id: int
    name: str
    url: str
    secret: str

    @property
    def subscriber(self) -> str:
        return f"webhook:{self.id}"


@dataclass(frozen=True)
class WebhookResult:
    ok: bool
    status_code: int | None = None
    error: str | None = None
    duration_ms: float = 0.0


def check_url(url: str, policy: NetPolicy) -> str:
    """``url`` stripped, or ValidationError(``url``) saying what is wrong with it."""
    url = url.strip()
    parts = urlsplit(url)
    problem = None
    if len(url) > 2000:
        problem = "must be at most 2000 characters"
    elif parts.scheme not in ("http", "https"):
        problem = "must start with https:// or http://"
    elif not parts.hostname:
        problem = "must name a host, e.g. https://automation.example.com/hooks/mail"
    elif parts.username is not None or "@" in parts.netloc:
        problem = "must not contain a user name or password"
    elif any(c.isspace() or not c.isprintable() for c in url):
        problem = "must not contain spaces or control characters"
    if problem is None:
        try:
            port = parts.port or (443 if parts.scheme == "https" else 80)
        except ValueError:
            problem = "has an invalid port"
        else:
            # An IP literal can be judged now; names are judged at every delivery.
            try:
                decision = check(policy, parts.hostname or "", port)
            except ValueError:
                decision = None
            if isinstance(decision, Denied):
                problem = f"is blocked by postroom's network policy: {decision.reason}"
    if problem:
        raise ValidationError(FieldError("url", problem))
    return url


async def post_webhook(
    target: WebhookTarget,
    body: bytes,
    *,
    policy: NetPolicy,
    timeout: float,
    headers: dict[str, str] | None = None,
) -> WebhookResult:
    """POST ``body`` (JSON) signed with the target's secret; 2xx is success. Never raises."""
    started = time.monotonic()

    def result(ok: bool, code: int | None = None, error: str | None = None) -> WebhookResult:
        return WebhookResult(ok, code, error, (time.monotonic() - started) * 1000)

    parts = urlsplit(target.url)
    host = parts.hostname or ""
    https = parts.scheme == "https"
    port = parts.port or (443 if https else 80)
    try:
        addresses = await resolve(host, port, policy=policy, timeout=timeout)
    except BlockedByPolicy as exc:
        reasons = " ".join(d.reason for d in exc.denied)
        return result(False, error=f"blocked by postroom's network policy: {reasons}")
    except (HostNotFound, ResolveTimeout, ValueError) as exc:
        return result(False, error=str(exc))
    sent_headers = {
        "Host": parts.netloc,
        "Content-Type": "application/json",
        "User-Agent": "postroom-webhook/1",
        **(headers or {}),
        **signature_headers(target.secret, body),
    }
    extensions = {"sni_hostname": host} if https else {}
    errors: list[str] = []
    async with httpx.AsyncClient(
        timeout=timeout,
        follow_redirects=False,
        trust_env=False,
        verify=make_context(verify=True, ca_bundle=None),
    ) as client:
        for address in addresses:
            shown = f"[{quote(address, safe=':')}]" if ":" in address else address
            url = urlunsplit((parts.scheme, f"{shown}:{port}", parts.path or "/", parts.query, ""))
            try:
                async with client.stream(
                    "POST", url, content=body, headers=sent_headers, extensions=extensions
                ) as response:
                    detail = await _head(response)
            except httpx.ConnectError as exc:
                errors.append(f"{address}: {exc or type(exc).__name__}")
                continue  # the next checked address may answer
            except httpx.TimeoutException:
                return result(False, error=f"no answer within {timeout:g} s")
            except httpx.HTTPError as exc:
                return result(False, error=f"{type(exc).__name__}: {exc}")
            if 200 <= response.status_code < 300:
                return result(True, response.status_code)
            shown_detail = f": {detail}" if detail else ""
            return result(False, response.status_code, f"HTTP {response.status_code}{shown_detail}")
    return result(False, error="could not connect: " + "; ".join(errors))


async def _head(response: httpx.Response) -> str:
    """The start of the response body, for the delivery log (never the whole body)."""
    data = b""
    async for chunk in response.aiter_bytes():
        data += chunk
        if len(data) >= _DETAIL_BYTES:
            break
    text = data[:_DETAIL_BYTES].decode("utf-8", "replace")
    return "".join(c if c.isprintable() else " " for c in text).strip()[:500]


class Webhooks:
    """Stored webhook subscriptions: add, list, remove; signing secrets stay encrypted."""

    def __init__(self, sessions: sessionmaker[Session], box: SecretBox, policy: NetPolicy) -> None:
        self._sessions = sessions
        self.box = box
        self._policy = policy

    def add(
        self,
        url: str,
        /,
        *,
        name: str | None = None,
        profile: str | None = None,
        secret: str | None = None,
    ) -> WebhookCreated:
        """Subscribe ``url`` to the messages of ``profile`` (every profile when None).

        Returns the subscription with its signing ``secret`` — shown this once. Raises
        ValidationError for a bad URL or name, NotFound for an unknown profile, Conflict
        when the name is taken.
        """
        url = check_url(url, self._policy)
        name = (name or urlsplit(url).hostname or "webhook").strip()
        if not 1 <= len(name) <= 100 or any(not c.isprintable() for c in name):
            raise ValidationError(FieldError("name", "must be 1-100 printable characters"))
        if secret is not None and len(secret) < 16:
            raise ValidationError(FieldError("secret", "must be at least 16 characters"))
        secret = secret or new_secret()
        with self._sessions() as s:
            profile_row = _profile(s, profile) if profile else None
            row = InboundWebhook(
                name=name,
                name_key=name_key(name),
                profile_id=profile_row.id if profile_row else None,
                url=url,
                secret=self.box.encrypt(secret),
                enabled=True,
                created_at=utcnow(),
            )
            s.add(row)
            try:
                s.commit()
            except IntegrityError:
                raise Conflict(
                    f"A webhook named '{name}' exists already; choose another name."
                ) from None
            read = _read(row, profile_row.name if profile_row else None)
        return WebhookCreated(**read.model_dump(), secret=secret)

    def list(self) -> list[WebhookRead]:
        with self._sessions() as s:
            names = {pid: pname for pid, pname in s.execute(select(Profile.id, Profile.name))}
            rows = s.scalars(select(InboundWebhook).order_by(InboundWebhook.id))
            return [_read(r, names.get(r.profile_id) if r.profile_id else None) for r in rows]

    def remove(self, name: str, /) -> None:
        """Remove the webhook named ``name`` (or with that id). Raises NotFound."""
        with self._sessions() as s:
            row = s.scalar(select(InboundWebhook).where(InboundWebhook.name_key == name_key(name)))
            if row is None and name.isdigit():
                row = s.get(InboundWebhook, int(name))
            if row is None:
                raise NotFound(f"No webhook named '{name}'. `postroom inbound webhook list`.")
            s.delete(row)
            s.commit()

    def targets(self, profile_id: int) -> builtins.list[WebhookTarget]:
        """Enabled webhooks for ``profile_id`` (and for every profile), secrets decrypted."""
        with self._sessions() as s:
            rows = s.scalars(
                select(InboundWebhook)
                .where(
                    InboundWebhook.enabled.is_(True),
                    (InboundWebhook.profile_id == profile_id) | InboundWebhook.profile_id.is_(None),
                )
                .order_by(InboundWebhook.id)
            )
            return [
                WebhookTarget(
                    r.id, r.name, r.url, self.box.decrypt(r.secret, what=f"webhook '{r.name}'")
                )
                for r in rows
            ]


def rotate_webhook_secrets(s: Session, box: SecretBox) -> int:
    """Re-encrypt every webhook secret under ``box``'s primary key (in the caller's
    transaction, as part of ``postroom keys rotate``); returns how many."""
    count = 0
    for row in s.scalars(select(InboundWebhook)):
        row.secret = box.rotate(row.secret, what=f"webhook '{row.name}'")
        count += 1
    return count


def _profile(s: Session, name: str) -> Profile:
    row = s.scalar(select(Profile).where(Profile.name_key == name_key(name)))
    if row is None:
        raise NotFound(f"No profile named '{name}'. `postroom profile list` shows them.")
    return row


def _read(row: InboundWebhook, profile: str | None) -> WebhookRead:
    return WebhookRead(
        id=row.id,
        name=row.name,
        profile=profile,
        url=row.url,
        enabled=row.enabled,
        created_at=row.created_at,
    )
