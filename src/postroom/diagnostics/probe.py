"""Runs a whole connection test: SMTP, IMAP, or both with a round trip between them."""

from __future__ import annotations

import asyncio
import time

from postroom.diagnostics.recorder import report_step
from postroom.diagnostics.smtp_probe import TEST_HEADER, probe_smtp
from postroom.diagnostics.steps import Code, Diagnosis, DiagnosisError, Step, hint_for
from postroom.imap.client import ImapError
from postroom.net.policy import NetPolicy
from postroom.profiles.schemas import ProfileSpec

__all__ = ["ROUNDTRIP_WAIT_S", "TEST_CAP_S", "run_test", "single_failure"]

TEST_CAP_S = 30.0
ROUNDTRIP_WAIT_S = 20.0


def single_failure(kind: str, step: str, code: Code, message: str, hint: str = "") -> Diagnosis:
    """A diagnosis that failed before any network step (e.g. a secret reference is missing)."""
    return Diagnosis(
        kind=kind,
        ok=False,
        steps=[Step(name=step, ok=False, ms=0.0, detail=message)],
        error=DiagnosisError(code=code, message=message, hint=hint or hint_for(code)),
    )


def _prefixed(prefix: str, d: Diagnosis) -> list[Step]:
    return [s.model_copy(update={"name": f"{prefix}.{s.name}"}) for s in d.steps]


async def _wait_for_token(
    spec: ProfileSpec, token: str, *, policy: NetPolicy, wait_s: float
) -> float | None:
    """Seconds until IMAP sees the message carrying ``token``; None if it never did."""
    from postroom.imap.client import ImapSession

    assert spec.imap is not None
    started = time.perf_counter()
    session = await ImapSession.open(spec.imap, policy=policy, timeout=spec.imap.connect_timeout_s)
    try:
        await session.login()
        while time.perf_counter() - started < wait_s:
            await session.select(spec.imap.folder)
            if await session.search_header(TEST_HEADER, token):
                return time.perf_counter() - started
            await asyncio.sleep(0.3)
        return None
    finally:
        await session.logout()


async def run_test(
    spec: ProfileSpec,
    *,
    policy: NetPolicy,
    smtp: bool = True,
    imap: bool = False,
    send_to: str | None = None,
    roundtrip: bool = False,
    cap_s: float = TEST_CAP_S,
    roundtrip_wait_s: float = ROUNDTRIP_WAIT_S,
) -> Diagnosis:
    """Test ``spec``. ``roundtrip`` sends a unique message by SMTP and waits for it by IMAP."""
    if roundtrip:
        smtp = imap = True
        if spec.imap is None:
            return single_failure(
                "roundtrip",
                "roundtrip",
                Code.IMAP_FOLDER_MISSING,
                "A round trip needs the IMAP section of the profile.",
                "Configure IMAP for this profile, or test SMTP alone.",
            )
        send_to = send_to or (
            spec.imap.username
            if spec.imap.username and "@" in spec.imap.username
            else spec.sender.from_address
        )
    if imap and spec.imap is None:
        return single_failure(
            "imap",
            "imap",
            Code.IMAP_FOLDER_MISSING,
            "This profile has no IMAP settings.",
            "Add IMAP settings (host, port, credentials) to test receiving.",
        )
    results: list[tuple[str, Diagnosis]] = []
    token = None
    if smtp:
        d, token = await probe_smtp(spec, policy=policy, send_to=send_to, cap_s=cap_s)
        results.append(("smtp", d))
    if imap and spec.imap is not None and (not results or results[-1][1].ok):
        from postroom.diagnostics.imap_probe import probe_imap

        results.append(("imap", await probe_imap(spec.imap, policy=policy, cap_s=cap_s)))
    if len(results) == 1 and not roundtrip:
        return results[0][1]
    combined = Diagnosis(kind="roundtrip" if roundtrip else "smtp+imap", ok=False)
    for prefix, d in results:
        combined.steps += _prefixed(prefix, d)
        combined.total_ms += d.total_ms
        if d.error and combined.error is None:
            combined.error = d.error
    if roundtrip and combined.error is None and token is not None:
        started = time.perf_counter()
        try:
            delay = await asyncio.wait_for(
                _wait_for_token(spec, token, policy=policy, wait_s=roundtrip_wait_s),
                roundtrip_wait_s + 5,
            )
        except (TimeoutError, OSError, ImapError) as exc:
            delay = None
            detail = f"IMAP failed while waiting: {type(exc).__name__}"
        else:
            detail = ""
        ms = round((time.perf_counter() - started) * 1000, 1)
        if delay is None:
            combined.steps.append(Step(name="roundtrip", ok=False, ms=ms, detail=detail))
            report_step("roundtrip", combined.steps[-1])
            combined.error = DiagnosisError(
                code=Code.ROUNDTRIP_TIMEOUT,
                message=f"The test message to {send_to} did not arrive in "
                f"'{spec.imap.folder if spec.imap else 'INBOX'}' within {roundtrip_wait_s:g} s.",
                hint=hint_for(Code.ROUNDTRIP_TIMEOUT),
            )
        else:
            combined.steps.append(
                Step(name="roundtrip", ok=True, ms=ms, detail=f"arrived after {delay:.1f} s")
            )
            report_step("roundtrip", combined.steps[-1])
    combined.ok = combined.error is None
    return combined
