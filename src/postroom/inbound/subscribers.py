"""Handing a stored message to its subscribers: stored webhooks and in-process callbacks.

Each subscriber has a stable key (``webhook:<id>``, ``callback:<name>``) and every attempt
is logged in ``inbound_deliveries``. A subscriber that took a message is never called for
it again, however often the others are retried; so a message is handed over at least once
to each, and only repeats where an attempt's outcome was lost (a crash in between).

Callbacks run in the process that holds the mailbox's lease: register them where the
listener runs (``postroom serve`` or your own :class:`~postroom.inbound.runner.InboundRunner`).
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from postroom.inbound.schemas import InboundConfig, InboundEvent
from postroom.inbound.store import InboundStore
from postroom.inbound.webhooks import Webhooks, post_webhook
from postroom.net.policy import NetPolicy
from postroom.profiles.service import name_key

__all__ = ["Callback", "CallbackRegistry", "CallbackSubscription", "Dispatcher"]

log = logging.getLogger("postroom.inbound")

#: A subscriber function: plain functions run on a worker thread, coroutines on the loop.
Callback = Callable[[InboundEvent], Awaitable[None] | None]


@dataclass(eq=False)
class CallbackSubscription:
    """One registered callback; :meth:`cancel` removes it."""

    name: str
    profile: str | None
    fn: Callback
    _registry: CallbackRegistry = field(repr=False)

    @property
    def subscriber(self) -> str:
        return f"callback:{self.name}"

    def cancel(self) -> None:
        self._registry.remove(self)


class CallbackRegistry:
    """In-process callbacks by profile (``None``: every profile)."""

    def __init__(self) -> None:
        self._subs: list[CallbackSubscription] = []

    def add(
        self, profile: str | None, fn: Callback, *, name: str | None = None
    ) -> CallbackSubscription:
        """Register ``fn``; ``name`` (default: its module and qualified name) identifies it
        in the delivery log, so re-registering after a restart continues its record."""
        name = name or f"{getattr(fn, '__module__', '?')}.{getattr(fn, '__qualname__', repr(fn))}"
        sub = CallbackSubscription(name[:200], profile, fn, self)
        self._subs.append(sub)
        return sub

    def remove(self, sub: CallbackSubscription) -> None:
        if sub in self._subs:
            self._subs.remove(sub)

    def for_profile(self, profile: str) -> list[CallbackSubscription]:
        key = name_key(profile)
        return [s for s in self._subs if s.profile is None or name_key(s.profile) == key]


class Dispatcher:
    """Delivers stored messages to every subscriber that has not taken them yet."""

    def __init__(
        self,
        store: InboundStore,
        webhooks: Webhooks,
        callbacks: CallbackRegistry,
        *,
        policy: NetPolicy,
        config: InboundConfig,
    ) -> None:
        self._store = store
        self._webhooks = webhooks
        self._callbacks = callbacks
        self._policy = policy
        self._config = config

    async def deliver(self, inbound_id: int, profile_id: int, *, tripped: set[str]) -> str | None:
        """Hand message ``inbound_id`` to its remaining subscribers.

        Returns None when every subscriber has it, else the first failure. Subscribers in
        ``tripped`` (failed earlier in this sync round) are not called again this round:
        one dead endpoint must not stall the mailbox for its timeout per message.
        """
        event = await asyncio.to_thread(self._store.event, inbound_id)
        done = await asyncio.to_thread(self._store.succeeded, inbound_id)
        targets = await asyncio.to_thread(self._webhooks.targets, profile_id)
        failure: str | None = None
        body: bytes | None = None
        for target in targets:
            key = target.subscriber
            if key in done:
                continue
            if key in tripped:
                failure = failure or f"webhook '{target.name}' failed earlier; retried later"
                continue
            body = body or event.model_dump_json().encode("utf-8")
            result = await post_webhook(
                target,
                body,
                policy=self._policy,
                timeout=self._config.webhook_timeout_s,
                headers={"X-Postroom-Event": event.type, "X-Postroom-Delivery": str(event.id)},
            )
            await asyncio.to_thread(
                self._store.log_delivery,
                inbound_id,
                key,
                ok=result.ok,
                webhook_id=target.id,
                status_code=result.status_code,
                error=result.error,
                duration_ms=result.duration_ms,
            )
            if not result.ok:
                tripped.add(key)
                failure = failure or f"webhook '{target.name}': {result.error}"
        for sub in self._callbacks.for_profile(event.profile):
            key = sub.subscriber
            if key in done:
                continue
            if key in tripped:
                failure = failure or f"callback '{sub.name}' failed earlier; retried later"
                continue
            error, ms = await self._call(sub, event)
            await asyncio.to_thread(
                self._store.log_delivery,
                inbound_id,
                key,
                ok=error is None,
                error=error,
                duration_ms=ms,
            )
            if error is not None:
                tripped.add(key)
                failure = failure or f"callback '{sub.name}': {error}"
        return failure

    async def _call(
        self, sub: CallbackSubscription, event: InboundEvent
    ) -> tuple[str | None, float]:
        started = time.monotonic()
        timeout = self._config.webhook_timeout_s
        try:
            if inspect.iscoroutinefunction(sub.fn):
                await asyncio.wait_for(sub.fn(event), timeout)
            else:
                # a blocking callback (database work, say) must not stall the event loop
                outcome = await asyncio.wait_for(asyncio.to_thread(sub.fn, event), timeout)
                if inspect.isawaitable(outcome):
                    await asyncio.wait_for(outcome, timeout)
        except TimeoutError:
            error: str | None = f"did not finish within {timeout:g} s"
        except Exception as exc:  # noqa: BLE001 - subscriber code is not ours: any failure
            # is that subscriber's, recorded and retried, never the sync's.
            log.warning("inbound callback %s failed: %r", sub.name, exc)
            error = f"{type(exc).__name__}: {exc}"
        else:
            error = None
        return error, (time.monotonic() - started) * 1000
