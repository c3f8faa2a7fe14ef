"""Action webhooks: who may be called, and the signed POST that announces a decision.

A ``webhook_url`` is given by whoever creates the action — a ``sender`` API key included —
so it must not let that caller make postroom speak to the machine itself or to the
internal network. Action webhooks are therefore judged by a stricter policy than the mail
servers an administrator configures: postroom's network policy, plus loopback, private,
shared (CGNAT) and unique-local ranges, unless the operator carves ranges out with
``POSTROOM_ACTION_WEBHOOK_ALLOW`` (:func:`webhook_policy`, pure).

Delivery goes through :func:`postroom.inbound.webhooks.post_webhook`, the path of inbound
webhooks: the host is resolved once, the connection goes to an address that was checked
(``Host`` and SNI keep the name), redirects are not followed, environment proxies are
ignored. Each action has its own signing secret (shown once, when it is created); the
key that signs action links is never used for webhooks, since receivers would need it.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import json
import time
from ipaddress import IPv4Network, IPv6Network, ip_network
from urllib.parse import urlsplit

from postroom.errors import FieldError, ValidationError
from postroom.inbound.webhooks import WebhookResult, WebhookTarget, check_url, post_webhook
from postroom.net.policy import NetPolicy, Network
from postroom.net.resolve import BlockedByPolicy, HostNotFound, ResolveTimeout, resolve

__all__ = [
    "ACTION_WEBHOOK_ALLOW_ENV",
    "EVENT",
    "INTERNAL_NETWORKS",
    "check_webhook_url",
    "deliver_decision",
    "webhook_policy",
]

ACTION_WEBHOOK_ALLOW_ENV = "POSTROOM_ACTION_WEBHOOK_ALLOW"
EVENT = "action.decided"

#: Ranges an action's creator may not point a webhook at unless the operator allows them.
INTERNAL_NETWORKS: tuple[Network, ...] = tuple(
    ip_network(cidr)
    for cidr in (
        "127.0.0.0/8",  # loopback
        "::1/128",
        "10.0.0.0/8",  # private (RFC 1918)
        "172.16.0.0/12",
        "192.168.0.0/16",
        "100.64.0.0/10",  # shared address space (carrier-grade NAT)
        "fc00::/7",  # unique local IPv6
    )
)

_RESOLVE_TIMEOUT_S = 5.0


def _without(network: Network, allowed: tuple[Network, ...]) -> list[Network]:
    """``network`` minus every allowed network (what is left stays denied)."""
    left: list[Network] = [network]
    for carve in allowed:
        nxt: list[Network] = []
        for net in left:
            if net.version != carve.version:
                nxt.append(net)
            elif net.subnet_of(carve):  # type: ignore[arg-type]
                continue  # allowed whole
            elif carve.subnet_of(net):  # type: ignore[arg-type]
                nxt.extend(net.address_exclude(carve))  # type: ignore[arg-type]
            else:
                nxt.append(net)
        left = nxt
    return left


def webhook_policy(base: NetPolicy, allow: str = "") -> NetPolicy:
    """The policy action webhooks are judged by: ``base`` plus the internal ranges, minus
    the ranges in ``allow`` (comma-separated CIDRs, ``POSTROOM_ACTION_WEBHOOK_ALLOW``).

    ``allow`` only carves out of the internal ranges: what ``base`` denies stays denied.

    Raises:
        ValueError: an item of ``allow`` is not a CIDR (the message names the variable).
    """
    carved: list[IPv4Network | IPv6Network] = []
    for item in (i.strip() for i in allow.split(",")):
        if not item:
            continue
        try:
            carved.append(ip_network(item, strict=False))
        except ValueError:
            raise ValueError(
                f"{ACTION_WEBHOOK_ALLOW_ENV}: {item!r} is not an IP network such as "
                "127.0.0.0/8 or 10.1.2.0/24"
            ) from None
    internal = [n for net in INTERNAL_NETWORKS for n in _without(net, tuple(carved))]
    return NetPolicy(deny=(*base.deny, *internal), allow=base.allow, ports=base.ports)


def check_webhook_url(url: str, policy: NetPolicy) -> str:
    """``url`` stripped, or ValidationError(``webhook_url``) when it is malformed or the
    policy denies it: an IP literal is judged as is, a name by what it resolves to now
    (and again at delivery, which connects only to an address it checked then).

    A name that does not resolve yet is accepted: it is checked when the decision is sent.
    """
    try:
        url = check_url(url, policy)
    except ValidationError as exc:
        raise ValidationError([FieldError("webhook_url", e.message) for e in exc.errors]) from None
    parts = urlsplit(url)
    host = parts.hostname or ""
    port = parts.port or (443 if parts.scheme == "https" else 80)
    try:
        _blocking(resolve(host, port, policy=policy, timeout=_RESOLVE_TIMEOUT_S))
    except BlockedByPolicy as exc:
        reasons = " ".join(d.reason for d in exc.denied)
        raise ValidationError(
            FieldError("webhook_url", f"is blocked by postroom's network policy: {reasons}")
        ) from None
    except ValueError as exc:
        raise ValidationError(FieldError("webhook_url", str(exc))) from None
    except (HostNotFound, ResolveTimeout):
        pass  # judged at delivery
    return url


def _blocking(coro: object) -> object:
    # create() is synchronous and may be called from inside a running event loop: resolve
    # on a thread of its own, with its own loop
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, coro).result()  # type: ignore[arg-type]


def deliver_decision(
    action_id: str,
    action: dict[str, object],
    *,
    url: str,
    secret: str,
    policy: NetPolicy,
    attempts: int = 5,
    backoff_s: float = 1.0,
    timeout: float = 10.0,
) -> WebhookResult:
    """POST ``{"event": "action.decided", "action": …}`` signed with ``secret``; retried
    with exponential backoff (at most ``attempts`` tries). Returns the last result."""
    body = json.dumps({"event": EVENT, "action": action}).encode("utf-8")
    target = WebhookTarget(0, f"action {action_id}", url, secret)
    headers = {"X-Postroom-Event": EVENT, "X-Postroom-Action": action_id}
    result = WebhookResult(False, error="not attempted")
    for attempt in range(attempts):
        if attempt:
            time.sleep(min(30.0, backoff_s * 2 ** (attempt - 1)))
        # signed anew at each attempt: the timestamp must be fresh for the receiver
        result = asyncio.run(
            post_webhook(target, body, policy=policy, timeout=timeout, headers=headers)
        )
        if result.ok or (result.error or "").startswith("blocked by"):
            break
    return result
