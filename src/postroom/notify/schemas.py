"""The shapes of templates, subscriptions, events and digests, as every surface shows them (pure)."""

from __future__ import annotations

import re
from datetime import datetime
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from postroom.addresses import check_single_line
from postroom.notify.compose import parse_mailbox
from postroom.notify.schedule import check_schedule, check_timezone

__all__ = [
    "DeliveryRead",
    "DeliveryStatus",
    "DigestRead",
    "DigestStatus",
    "EventRead",
    "NotifyResult",
    "SubscriptionRead",
    "SubscriptionSpec",
    "TemplateOrigin",
    "TemplateRead",
    "TemplateSpec",
    "TemplateUpdate",
    "check_event_name",
]

MAX_SOURCE_CHARS = 512 * 1024
_TEMPLATE_NAME = r"^[a-z0-9][a-z0-9_.-]{0,99}$"
_EVENT_NAME = re.compile(r"^[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+)*$")
_EVENT_GLOB = re.compile(r"^[A-Za-z0-9_.*?\[\]!-]{1,200}$")


def check_event_name(event: str) -> str | None:
    """A reason when ``event`` is not a dotted event name such as ``run.failed``."""
    if not event or len(event) > 200 or not _EVENT_NAME.match(event):
        return "must be a dotted name of letters, digits, '_' and '-', such as run.failed"
    return None


class TemplateOrigin(StrEnum):
    BUILTIN = "builtin"  # the shipped default, unchanged
    OVERRIDE = "override"  # an admin's version of a built-in
    CUSTOM = "custom"  # an admin's own template


class _Parts(BaseModel):
    @field_validator("subject", "html", "text", check_fields=False)
    @classmethod
    def _size(cls, v: str | None) -> str | None:
        if v is not None and len(v) > MAX_SOURCE_CHARS:
            raise ValueError(f"must be at most {MAX_SOURCE_CHARS // 1024} KiB")
        return v


class TemplateSpec(_Parts):
    """A template as an admin saves it: Jinja2 source for each part, and sample data."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(pattern=_TEMPLATE_NAME)
    description: str = Field(default="", max_length=500)
    subject: str = Field(min_length=1)
    html: str | None = None
    text: str | None = None
    sample_data: dict[str, Any] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _has_body(self) -> TemplateSpec:
        if not (self.html or self.text):
            raise ValueError("html: give an html or a text part (or both)")
        return self


class TemplateUpdate(_Parts):
    """A change to a template; fields left out keep their value (``html: null`` removes it)."""

    model_config = ConfigDict(extra="forbid")

    description: str | None = Field(default=None, max_length=500)
    subject: str | None = Field(default=None, min_length=1)
    html: str | None = None
    text: str | None = None
    sample_data: dict[str, Any] | None = None


class TemplateRead(BaseModel):
    name: str
    description: str
    subject: str
    html: str | None
    text: str | None
    sample_data: dict[str, Any]
    #: optimistic concurrency: pass it back to update; 0 = the built-in as shipped
    version: int
    origin: TemplateOrigin
    updated_at: datetime | None = None
    updated_by: str | None = None
    deleted: bool = False


class SubscriptionSpec(BaseModel):
    """Who gets mail for which events: at once, or as a summary on a schedule."""

    model_config = ConfigDict(extra="forbid")

    event: str = Field(description="event name or glob, e.g. run.failed or run.*")
    process: str | None = Field(default=None, description="process name or glob; null = any")
    address: str = Field(description="one recipient: a@b.c or 'Name <a@b.c>'")
    template: str | None = Field(default=None, pattern=_TEMPLATE_NAME)
    filter: dict[str, list[Any]] | None = Field(
        default=None, description='data field → allowed values, e.g. {"status": ["failed"]}'
    )
    schedule: str | None = Field(default=None, description="cron; set for a summary instead")
    timezone: str = "UTC"
    send_empty: bool = False
    enabled: bool = True

    @field_validator("event")
    @classmethod
    def _event(cls, v: str) -> str:
        if not _EVENT_GLOB.match(v):
            raise ValueError("must be an event name or glob such as run.failed or run.*")
        return v

    @field_validator("process")
    @classmethod
    def _process(cls, v: str | None) -> str | None:
        v = (v or "").strip() or None
        if v is not None and (len(v) > 200 or check_single_line(v)):
            raise ValueError("must be a process name or glob on one line (at most 200 characters)")
        return v

    @field_validator("address")
    @classmethod
    def _address(cls, v: str) -> str:
        parse_mailbox(v)
        return v.strip()

    @field_validator("filter")
    @classmethod
    def _filter(cls, v: dict[str, list[Any]] | None) -> dict[str, list[Any]] | None:
        for key, allowed in (v or {}).items():
            if not key or len(key) > 200 or not allowed:
                raise ValueError(f"'{key}' needs a field name and at least one allowed value")
        return v or None

    @field_validator("schedule")
    @classmethod
    def _schedule(cls, v: str | None) -> str | None:
        v = " ".join((v or "").split()) or None
        reason = check_schedule(v) if v else None
        if reason:
            raise ValueError(reason)
        return v

    @field_validator("timezone")
    @classmethod
    def _timezone(cls, v: str) -> str:
        reason = check_timezone(v)
        if reason:
            raise ValueError(reason)
        return v


class SubscriptionRead(SubscriptionSpec):
    id: int
    template: str
    mode: str = Field(description="immediate | digest")
    created_at: datetime
    created_by: str
    next_digest_at: datetime | None = None


class DeliveryStatus(StrEnum):
    QUEUED = "queued"  # rendered and in the outbox (see its status there)
    FAILED = "failed"  # could not be rendered or composed; ``error`` says why
    COLLECTED = "collected"  # waits for its subscription's next summary
    SUMMARIZED = "summarized"  # went out in a summary (``digest_id``)


class DeliveryRead(BaseModel):
    subscription_id: int | None
    address: str
    status: DeliveryStatus
    outbox_id: int | None = None
    digest_id: int | None = None
    error: str | None = None


class NotifyResult(BaseModel):
    """What one ``notify()`` did: the stored event and one delivery per subscription reached."""

    event_id: int
    event: str
    process: str | None
    deliveries: list[DeliveryRead]


class EventRead(NotifyResult):
    data: dict[str, Any]
    created_at: datetime


class DigestStatus(StrEnum):
    QUEUED = "queued"
    EMPTY = "empty"  # nothing happened in the period and send_empty is off
    FAILED = "failed"  # the summary could not be rendered; its events wait for the next one


class DigestRead(BaseModel):
    id: int
    subscription_id: int
    period_start: datetime
    period_end: datetime
    status: DigestStatus
    events: int
    outbox_id: int | None
    error: str | None
    created_at: datetime
