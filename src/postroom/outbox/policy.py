"""When to try a message again (pure): exponential backoff with jitter, until a deadline."""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import datetime, timedelta

from postroom.smtp.replies import Outcome, classify

__all__ = ["GiveUp", "Retry", "RetryPolicy", "next_attempt"]


@dataclass(frozen=True)
class RetryPolicy:
    base_s: float = 30.0
    max_s: float = 3600.0
    jitter: float = 0.2  # ± fraction of the delay, so retries of many messages spread out


@dataclass(frozen=True)
class Retry:
    at: datetime


@dataclass(frozen=True)
class GiveUp:
    reason: str


def next_attempt(
    attempt: int,
    code: int | None,
    *,
    now: datetime,
    deadline: datetime,
    policy: RetryPolicy = RetryPolicy(),
    rng: random.Random | None = None,
) -> Retry | GiveUp:
    """After failed attempt number ``attempt`` (1-based) with reply ``code`` (None = no reply)."""
    if classify(code) is Outcome.PERMANENT:
        return GiveUp(f"the server refused it permanently ({code})")
    delay = min(policy.max_s, policy.base_s * (2 ** max(0, attempt - 1)))
    spread = delay * policy.jitter
    delay += (rng or random).uniform(-spread, spread)
    at = now + timedelta(seconds=max(1.0, delay))
    if at > deadline:
        return GiveUp("the delivery deadline passed while the server kept failing temporarily")
    return Retry(at)
