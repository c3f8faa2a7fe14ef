"""Actionable emails: a request with choices, one signed link per choice and recipient.

Links lead to a confirmation page (GET changes nothing: mail scanners fetch links); the
POST from that page decides, once. A reply whose first word is a choice decides too, when
it proves it comes from the recipient (see :mod:`postroom.actions.replies`); every reply
to a request is recorded, refused ones with the reason. The decision reaches the process
by callback, webhook and ``GET /api/v1/actions/{id}``.
"""

from __future__ import annotations

import hmac
import html
import json
import logging
import re
import secrets
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from pydantic import BaseModel
from sqlalchemy import func, select, update
from sqlalchemy.orm import Session, sessionmaker

from postroom.actions.links import Invalid, LinkClaims, recipient_hash, sign, verify
from postroom.actions.replies import (
    DELIVERY_HEADERS,
    ReplyRead,
    auth_verdict,
    new_reply_token,
    reply_address,
    token_hash,
    tokens_in,
)
from postroom.actions.tables import ActionKey, ActionMessage, ActionReply, ActionRequest
from postroom.actions.webhooks import check_webhook_url, deliver_decision
from postroom.addresses import check_single_line, parse_mailbox
from postroom.db.tables import Profile, utcnow
from postroom.errors import (
    FieldError,
    NotFound,
    PermissionDenied,
    SecretKeyError,
    ValidationError,
)
from postroom.inbound.schemas import InboundEvent
from postroom.inbound.signing import new_secret
from postroom.inbound.text import clean
from postroom.net.policy import NetPolicy
from postroom.notify.plaintext import html_to_text
from postroom.outbox.service import Outbox, SendRequest
from postroom.profiles.bindings import Bindings
from postroom.profiles.schemas import SenderSettings
from postroom.profiles.service import name_key
from postroom.secrets import SecretBox
from postroom.send_limits import SendLimits
from postroom.senders import SenderScope

__all__ = ["ActionRead", "Actions", "LinkCheck", "rotate_action_secrets"]

log = logging.getLogger("postroom.actions")

_CHOICE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,39}$")
_SUBJECT_TOKEN = re.compile(r"\[#(act_[0-9a-f]{16})\]")
MAX_EXPIRY_S = 90 * 86400
MAX_REPLIES = 100  # recorded per request: a flood of forged replies cannot grow it further


class ActionRead(BaseModel):
    id: str
    status: str  # pending | decided | expired
    process: str
    profile: str
    subject: str
    choices: list[str]
    recipients: list[str]
    context: dict[str, Any]
    decision: str | None
    decided_by: str | None
    decided_via: str | None
    decided_at: datetime | None
    #: for a decision by reply: what the receiving server's Authentication-Results said
    decided_auth: str | None = None
    #: every reply to the request: the one that decided, and refused ones with the reason
    replies: list[ReplyRead] = []
    created_at: datetime
    expires_at: datetime
    #: the first recipient's link per choice (the whole map is in links_by_recipient)
    links: dict[str, str] = {}
    links_by_recipient: dict[str, dict[str, str]] = {}
    #: where the decision is POSTed, and how that went (None: not yet, or no webhook)
    webhook_url: str | None = None
    webhook_status: str | None = None
    #: the secret that signs this action's webhook: in the response to create only
    webhook_secret: str | None = None


class LinkCheck(BaseModel):
    """What a link means now: for the confirmation and result pages."""

    ok: bool
    reason: str | None = None  # invalid | expired | decided
    action: ActionRead | None = None
    choice: str | None = None
    recipient: str | None = None


def _read_full(s: Session, row: ActionRequest) -> ActionRead:
    read = _read(row)
    rows = s.scalars(
        select(ActionReply).where(ActionReply.action_id == row.id).order_by(ActionReply.id)
    )
    read.replies = [
        ReplyRead(
            received_at=r.received_at, inbound_id=r.inbound_id, from_address=r.from_address,
            outcome=r.outcome, reason=r.reason, authentication=r.authentication,
        )
        for r in rows
    ]  # fmt: skip
    return read


def _read(row: ActionRequest) -> ActionRead:
    status = row.status
    if status == "pending" and utcnow() >= row.expires_at:
        status = "expired"
    return ActionRead(
        id=row.id, status=status, process=row.process, profile=row.profile_name,
        subject=row.subject, choices=list(row.choices), recipients=list(row.recipients),
        context=dict(row.context or {}), decision=row.decision, decided_by=row.decided_by,
        decided_via=row.decided_via, decided_at=row.decided_at, decided_auth=row.decided_auth,
        created_at=row.created_at,
        expires_at=row.expires_at, webhook_url=row.webhook_url, webhook_status=row.webhook_status,
    )  # fmt: skip


class Actions:
    def __init__(
        self,
        sessions: sessionmaker[Session],
        box: SecretBox,
        outbox: Outbox,
        bindings: Bindings,
        *,
        public_url: str | None,
        policy: NetPolicy,
        webhook_policy: NetPolicy | None = None,
        limits: SendLimits | None = None,
    ) -> None:
        self._sessions = sessions
        self._box = box
        self._outbox = outbox
        self._bindings = bindings
        self._public_url = public_url
        self._policy = policy
        self._limits = limits or SendLimits()
        #: action webhooks are named by callers (sender keys too): a stricter policy
        self._webhook_policy = webhook_policy or policy
        #: first wait between webhook attempts (doubles each time); tests shorten it
        self.webhook_backoff_s = 1.0
        self._callbacks: list[Callable[[ActionRead], None]] = []

    # -- keys -------------------------------------------------------------------------------

    def _keys(self) -> tuple[str, dict[str, bytes]]:
        """The signing key id (newest) and every key by id (old links keep working)."""
        with self._sessions() as s:
            rows = list(s.scalars(select(ActionKey).order_by(ActionKey.created_at)))
            if not rows:
                kid = secrets.token_hex(4)
                s.add(ActionKey(kid=kid, key=self._box.encrypt(secrets.token_hex(32))))
                s.commit()
                rows = list(s.scalars(select(ActionKey).order_by(ActionKey.created_at)))
            keys = {
                r.kid: self._box.decrypt(r.key, what="an action link key").encode() for r in rows
            }
            return rows[-1].kid, keys

    def rotate_key(self) -> str:
        """A new signing key; links signed with older keys stay valid until they expire."""
        kid = secrets.token_hex(4)
        with self._sessions() as s:
            s.add(ActionKey(kid=kid, key=self._box.encrypt(secrets.token_hex(32))))
            s.commit()
        return kid

    # -- creating ---------------------------------------------------------------------------

    def _base_url(self, s: Session, profile_name: str) -> str:
        row = s.scalar(select(Profile).where(Profile.name_key == name_key(profile_name)))
        base = (row.spec.get("email_actions_base_url") if row else None) or self._public_url
        if not base:
            raise ValidationError(
                FieldError(
                    "email_actions_base_url",
                    f"profile '{profile_name}' has no email actions base URL and POSTROOM_PUBLIC_URL "
                    "is not set: links need the address people reach postroom at",
                )
            )
        return base.rstrip("/")

    def _reply_mailbox(self, s: Session, profile_name: str) -> str:
        """The address of the mailbox replies come back to: the profile's Reply-To, else
        its From address (the mailbox the request was sent from)."""
        row = s.scalar(select(Profile).where(Profile.name_key == name_key(profile_name)))
        if row is None:
            raise ValidationError(
                FieldError("process", f"no profile named '{profile_name}'", kind="not_found")
            )
        sender = SenderSettings.model_validate(row.spec["sender"])
        return parse_mailbox(sender.reply_to or sender.from_address)[1]

    def create(
        self,
        *,
        process: str,
        to: list[str],
        subject: str,
        choices: list[str],
        text: str | None = None,
        html_body: str | None = None,
        expires_in_s: int = 7 * 86400,
        context: dict[str, Any] | None = None,
        webhook_url: str | None = None,
        scope: SenderScope | None = None,
    ) -> ActionRead:
        """Send the request (one mail per recipient) through the process's profile.

        With ``scope`` (an API key's): only as the key may send (else PermissionDenied);
        the request and its mails record the key as their creator."""
        if scope is not None:
            scope.check_process(process)
        errors = []
        if not choices or len(choices) > 10:
            errors.append(FieldError("choices", "give 1 to 10 choices"))
        elif any(not isinstance(c, str) or not _CHOICE.match(c) for c in choices):
            errors.append(FieldError("choices", "each choice is one word: letters, digits, - or _"))
        elif len({c.lower() for c in choices}) != len(choices):
            errors.append(FieldError("choices", "choices must differ (regardless of case)"))
        if not isinstance(expires_in_s, int) or not 60 <= expires_in_s <= MAX_EXPIRY_S:
            errors.append(
                FieldError("expires_in_s", f"must be between 60 and {MAX_EXPIRY_S} seconds")
            )
        if not to:
            errors.append(FieldError("to", "needs at least one recipient"))
        errors += self._over_limits(to, text, html_body, context)
        addresses = []
        # too many addresses are refused without parsing them (100,000 take seconds)
        for a in to if len(to) <= self._limits.recipients_per_action else ():
            try:
                addresses.append(parse_mailbox(a)[1].lower())
            except ValueError as exc:
                errors.append(FieldError("to", str(exc)))
        if check_single_line(subject or "x") or not subject:
            errors.append(FieldError("subject", "must be one line of text"))
        if text is None and html_body is None:
            errors.append(FieldError("text", "give a text or html body"))
        if webhook_url is not None:
            if not isinstance(webhook_url, str):
                errors.append(FieldError("webhook_url", "must be an http(s) URL"))
            else:
                try:
                    webhook_url = check_webhook_url(webhook_url, self._webhook_policy)
                except ValidationError as exc:
                    errors += exc.errors
        if errors:
            raise ValidationError(errors)
        explanation = self._bindings.explain(process)
        if explanation.profile is None:
            raise ValidationError(FieldError("process", explanation.message))
        if scope is not None:
            scope.check_profile(explanation.profile, process=process)
        action_id = f"act_{secrets.token_hex(8)}"
        expires_at = utcnow() + timedelta(seconds=expires_in_s)
        kid, keys = self._keys()
        webhook_secret = new_secret() if webhook_url else None
        with self._sessions() as s:
            base = self._base_url(s, explanation.profile)
            mailbox = self._reply_mailbox(s, explanation.profile)
            s.add(
                ActionRequest(
                    id=action_id, process=process, profile_name=explanation.profile,
                    subject=subject, choices=choices, recipients=addresses,
                    context=context or {}, expires_at=expires_at, webhook_url=webhook_url,
                    webhook_secret=self._box.encrypt(webhook_secret) if webhook_secret else None,
                    created_by=scope.key_id if scope is not None else None,
                )
            )  # fmt: skip
            s.commit()
        links: dict[str, dict[str, str]] = {}
        requests = []
        # the HTML's text is made once per action (in linear time), not once per recipient
        intro = text if text is not None else html_to_text(html_body or "")
        # one reply token per recipient: only that recipient's mail names its address
        tokens = {address: new_reply_token() for address in addresses}
        for address in addresses:
            mine = {
                c: f"{base}/actions/{sign(LinkClaims(action_id, c, recipient_hash(address), int(expires_at.timestamp())), key_id=kid, key=keys[kid])}"
                for c in choices
            }
            links[address] = mine
            requests.append(
                SendRequest(
                    {
                        "to": [address],
                        "reply_to": reply_address(mailbox, tokens[address]),
                        "subject": f"{subject} [#{action_id}]",
                        "text": _text_with_links(intro, mine, expires_at),
                        "html": _html_with_links(html_body, mine, expires_at) if html_body else None,
                        "headers": {"Auto-Submitted": "auto-generated", "X-Auto-Response-Suppress": "All",
                                    "X-Postroom-Action": action_id},
                    },
                    process=process,
                )
            )  # fmt: skip
        try:
            ids = self._outbox.send_many(requests, scope=scope)
        except (ValidationError, PermissionDenied):  # nothing was queued: no request either
            with self._sessions() as s:
                s.delete(s.get(ActionRequest, action_id))
                s.commit()
            raise
        with self._sessions() as s:
            for address, outbox_id in zip(addresses, ids, strict=True):
                m = self._outbox.get(outbox_id)
                s.add(
                    ActionMessage(
                        action_id=action_id,
                        recipient=address,
                        message_id=m.message_id,
                        outbox_id=outbox_id,
                        reply_token_hash=token_hash(tokens[address]),
                    )
                )
            s.commit()
        result = self.get(action_id)
        result.links = links[addresses[0]]
        result.links_by_recipient = links
        result.webhook_secret = webhook_secret  # shown this once
        return result

    def _over_limits(
        self, to: list[str], text: str | None, html_body: str | None, context: Any
    ) -> list[FieldError]:
        """The action's recipients and body sizes against the configured limits."""
        limits = self._limits
        found = [limits.action_recipients(len(to))]
        for field, body in (("text", text), ("html", html_body)):
            if isinstance(body, str):
                found.append(limits.action_body(field, len(body.encode("utf-8", "replace"))))
        if context:
            try:
                size = len(json.dumps(context, ensure_ascii=False).encode("utf-8", "replace"))
            except (TypeError, ValueError):
                size = 0  # not JSON: the caller's own validation says so
            found.append(limits.action_body("context", size))
        return [e for e in found if e is not None]

    # -- reading ----------------------------------------------------------------------------

    def get(self, action_id: str, /, *, owner: int | None = None) -> ActionRead:
        """One request; with ``owner``, only if that API key created it (else NotFound)."""
        with self._sessions() as s:
            row = s.get(ActionRequest, action_id)
            if row is None or (owner is not None and row.created_by != owner):
                raise NotFound(f"No action request with id {action_id}.")
            return _read_full(s, row)

    def subscribe(self, callback: Callable[[ActionRead], None]) -> None:
        """Call ``callback`` in this process with each decision."""
        self._callbacks.append(callback)

    def check_link(self, token: str) -> LinkCheck:
        """What a link means, without changing anything (for GET and HEAD)."""
        _, keys = self._keys()
        claims = verify(token, keys=keys, now=int(time.time()))
        if isinstance(claims, Invalid):
            if claims.reason == "expired":
                return LinkCheck(ok=False, reason="expired")
            return LinkCheck(ok=False, reason="invalid")
        with self._sessions() as s:
            row = s.get(ActionRequest, claims.action_id)
            if row is None or claims.choice not in row.choices:
                return LinkCheck(ok=False, reason="invalid")
            recipient = next(
                (
                    r
                    for r in row.recipients
                    if hmac.compare_digest(recipient_hash(r), claims.recipient_hash)
                ),
                None,
            )
            if recipient is None:
                return LinkCheck(ok=False, reason="invalid")
            action = _read(row)
        if action.status == "decided":
            return LinkCheck(
                ok=False, reason="decided", action=action, choice=claims.choice, recipient=recipient
            )
        if action.status == "expired":
            return LinkCheck(ok=False, reason="expired", action=action)
        return LinkCheck(ok=True, action=action, choice=claims.choice, recipient=recipient)

    # -- deciding ---------------------------------------------------------------------------

    def decide_by_link(self, token: str) -> LinkCheck:
        """Record the link's choice, once. A second use reports the first decision."""
        check = self.check_link(token)
        if not check.ok or check.action is None or check.choice is None or check.recipient is None:
            return check
        return self._decide(check.action.id, check.choice, check.recipient, "link")

    def _decide(
        self,
        action_id: str,
        choice: str,
        recipient: str,
        via: str,
        *,
        auth: str | None = None,
        reply: InboundEvent | None = None,
    ) -> LinkCheck:
        now = utcnow()
        with self._sessions() as s:
            result = s.execute(
                update(ActionRequest)
                .where(
                    ActionRequest.id == action_id,
                    ActionRequest.status == "pending",
                    ActionRequest.expires_at > now,
                )
                .values(
                    status="decided",
                    decision=choice,
                    decided_by=recipient,
                    decided_via=via,
                    decided_at=now,
                    decided_auth=auth,
                )
            )
            decided = result.rowcount == 1  # type: ignore[attr-defined]
            if reply is not None:  # recorded with the decision: one transaction
                s.add(_reply_row(action_id, reply, "decided" if decided else "late",
                                 None if decided else "the request was decided or had expired",
                                 auth or ""))  # fmt: skip
            s.commit()
            row = s.get(ActionRequest, action_id)
            assert row is not None
            action = _read_full(s, row)
        if not decided:
            reason = "decided" if action.status == "decided" else "expired"
            return LinkCheck(
                ok=False, reason=reason, action=action, choice=choice, recipient=recipient
            )
        self._announce(action, row.webhook_url)
        return LinkCheck(ok=True, action=action, choice=choice, recipient=recipient)

    def decide_by_reply(self, event: InboundEvent, /) -> LinkCheck | None:
        """Decide from a received reply; None when it is not a reply to any request.

        The reply must have been sent to a recipient's reply address (its token names the
        request and the recipient), arrive on the mailbox of the request's profile, come
        ``From`` that recipient, not fail DMARC by the receiving server's verdict, and
        start with a choice. Every reply to a request is recorded, refused ones with why.
        """
        delivered = [v for k, v in event.headers if k.strip().lower() in DELIVERY_HEADERS]
        found = tokens_in([*event.to, *event.cc, *delivered])
        verdict = auth_verdict(event.headers)
        sender = (event.from_address or "").strip().lower()
        with self._sessions() as s:
            msg = (
                s.scalar(
                    select(ActionMessage).where(
                        ActionMessage.reply_token_hash.in_([token_hash(t) for t in found])
                    )
                )
                if found
                else None
            )
            action_id = msg.action_id if msg else self._threaded_to(s, event)
            if action_id is None:
                return None
            row = s.get(ActionRequest, action_id)
            if row is None:
                return None
            choices = {c.lower(): c for c in row.choices}
            profile = row.profile_name
        refused = None
        if msg is None:
            refused = (
                "no reply token: the reply was not sent to the reply address this request "
                "gave its recipient (From and the subject prove nothing)"
            )
        elif name_key(event.profile) != name_key(profile):
            refused = (
                f"arrived on the mailbox of profile '{event.profile}', but the request was "
                f"sent from '{profile}'"
            )
        elif sender != msg.recipient:
            refused = f"From is not {msg.recipient}, the recipient this reply address was given to"
        elif verdict.dmarc_failed:
            refused = (
                f"the receiving server's Authentication-Results say dmarc=fail ({verdict.text})"
            )
        word = _first_word(event.text or "")
        if refused is None and (word is None or word.lower() not in choices):
            refused = f"the first word is not one of the choices ({', '.join(choices.values())})"
        if refused is not None or msg is None or word is None:
            self._record_reply(action_id, event, "refused", refused, verdict.text)
            log.warning("a reply to %s was refused: %s", action_id, refused)
            return LinkCheck(ok=False, reason="refused", action=self.get(action_id))
        return self._decide(
            action_id, choices[word.lower()], msg.recipient, "reply", auth=verdict.text, reply=event
        )

    def _threaded_to(self, s: Session, event: InboundEvent) -> str | None:
        """The request a message says it answers (threading or the subject's [#act_…])."""
        ids = [i for i in [event.in_reply_to, *event.references] if i][:50]
        if ids:
            msg = s.scalar(select(ActionMessage).where(ActionMessage.message_id.in_(ids)))
            if msg is not None:
                return msg.action_id
        found = _SUBJECT_TOKEN.search(event.subject or "")
        return found.group(1) if found else None

    def _record_reply(
        self, action_id: str, event: InboundEvent, outcome: str, reason: str | None, auth: str
    ) -> None:
        with self._sessions() as s:
            count = s.scalar(
                select(func.count())
                .select_from(ActionReply)
                .where(ActionReply.action_id == action_id)
            )
            if (count or 0) >= MAX_REPLIES:
                return
            s.add(_reply_row(action_id, event, outcome, reason, auth))
            s.commit()

    def _announce(self, action: ActionRead, webhook_url: str | None) -> None:
        for callback in self._callbacks:
            try:
                callback(action)
            except Exception:  # noqa: BLE001 - one broken subscriber must not undo a decision
                log.exception("an action callback failed for %s", action.id)
        if webhook_url:
            threading.Thread(
                target=self._post_webhook, args=(action, webhook_url), daemon=True
            ).start()

    def _post_webhook(self, action: ActionRead, url: str) -> None:
        with self._sessions() as s:
            row = s.get(ActionRequest, action.id)
            stored = row.webhook_secret if row else None
        if not stored:
            # actions created before per-webhook secrets: the link key must never sign
            # what receivers verify, and they hold no other secret
            self._webhook_status(action.id, "not sent: the action has no webhook secret")
            return
        try:
            secret = self._box.decrypt(stored, what=f"the webhook secret of {action.id}")
        except SecretKeyError as exc:
            self._webhook_status(action.id, f"not sent: {exc}")
            return
        shown = action.model_dump(mode="json", exclude={"webhook_secret", "webhook_status"})
        result = deliver_decision(
            action.id, shown, url=url, secret=secret, policy=self._webhook_policy,
            backoff_s=self.webhook_backoff_s,
        )  # fmt: skip
        if result.ok:
            self._webhook_status(action.id, f"delivered ({result.status_code})")
        else:
            self._webhook_status(action.id, f"failed: {result.error}")

    def _webhook_status(self, action_id: str, status: str) -> None:
        with self._sessions() as s:
            s.execute(
                update(ActionRequest)
                .where(ActionRequest.id == action_id)
                .values(webhook_status=status[:500])
            )
            s.commit()


def _reply_row(
    action_id: str, event: InboundEvent, outcome: str, reason: str | None, auth: str
) -> ActionReply:
    return ActionReply(
        action_id=action_id, inbound_id=event.id, received_at=utcnow(),
        from_address=clean(event.from_address, 320), outcome=outcome,
        reason=clean(reason, 1000), authentication=clean(auth, 500) or "",
    )  # fmt: skip


def rotate_action_secrets(s: Session, box: SecretBox) -> int:
    """Re-encrypt every action webhook secret under ``box``'s primary key (in the caller's
    transaction, as part of ``postroom keys rotate``); returns how many."""
    count = 0
    rows = s.scalars(select(ActionRequest).where(ActionRequest.webhook_secret.is_not(None)))
    for row in rows:
        assert row.webhook_secret is not None
        row.webhook_secret = box.rotate(row.webhook_secret, what=f"the webhook secret of {row.id}")
        count += 1
    return count


def _first_word(text: str) -> str | None:
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith(">"):
            continue
        word = re.match(r"[A-Za-z0-9_-]+", line)
        return word.group(0) if word else None
    return None


def _text_with_links(intro: str, links: dict[str, str], expires: datetime) -> str:
    lines = [intro.rstrip(), "", "Choose one:"]
    for choice, url in links.items():
        lines.append(f"  {choice}: {url}")
    lines += ["", f"Or reply with the word {' or '.join(links)} as the first word.",
              f"These links expire on {expires.astimezone(UTC):%Y-%m-%d %H:%M} UTC."]  # fmt: skip
    return "\n".join(lines) + "\n"


def _html_with_links(html_body: str, links: dict[str, str], expires: datetime) -> str:
    buttons = " ".join(
        f'<a href="{html.escape(url)}" style="display:inline-block;padding:8px 16px;margin:4px;'
        f'border-radius:4px;background:#2b59c3;color:#fff;text-decoration:none">{html.escape(choice.title())}</a>'
        for choice, url in links.items()
    )
    return (
        f'{html_body}\n<p>{buttons}</p>\n<p style="color:#666;font-size:12px">Or reply with '
        f"{html.escape(' or '.join(links))} as the first word. The links expire on "
        f"{expires.astimezone(UTC):%Y-%m-%d %H:%M} UTC.</p>"
    )
