"""Runs diagnosis steps in order: times each, stops at the first failure, keeps its error."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field

from postroom.diagnostics.steps import Code, Diagnosis, DiagnosisError, Step, hint_for

__all__ = ["STEP_LISTENER", "Abort", "Recorder", "StepFailed", "StepHandle", "report_step"]

#: Called with (kind, step) as each step finishes, so a caller can show progress while a
#: test that may take 30 s runs (``postroom profile test``). A context variable, not a
#: parameter: the probes run several layers below the caller, and ``asyncio.run`` copies
#: the caller's context into the test.
STEP_LISTENER: ContextVar[Callable[[str, Step], None] | None] = ContextVar(
    "postroom_step_listener", default=None
)


def report_step(kind: str, step: Step) -> None:
    listener = STEP_LISTENER.get()
    if listener is not None:
        listener(kind, step)


class StepFailed(Exception):
    """Raised inside a step: the step failed with ``code``; ``message`` says what happened."""

    def __init__(
        self, code: Code | str, message: str, *, detail: str = "", cause: str = ""
    ) -> None:
        super().__init__(message)
        self.code = Code(code)
        self.message = message
        self.detail = detail
        #: refines the hint for ``code`` (see :func:`~postroom.diagnostics.steps.hint_for`)
        self.cause = cause


class Abort(Exception):
    """A step failed; the diagnosis is complete."""


@dataclass
class StepHandle:
    detail: str = ""


@dataclass
class Recorder:
    kind: str
    protocol: str
    host: str
    port: int
    security: str
    diagnosis: Diagnosis = field(init=False)
    current: str | None = field(default=None, init=False)
    _started: float = field(default=0.0, init=False)
    _step_started: float = field(default=0.0, init=False)

    def __post_init__(self) -> None:
        self.diagnosis = Diagnosis(kind=self.kind, ok=False)
        self._started = time.perf_counter()

    @asynccontextmanager
    async def step(self, name: str) -> AsyncIterator[StepHandle]:
        handle = StepHandle()
        self.current = name
        self._step_started = time.perf_counter()
        try:
            yield handle
        except StepFailed as exc:
            self.fail(
                name, exc.code, exc.message, detail=exc.detail or exc.message, cause=exc.cause
            )
            raise Abort from None
        done = Step(name=name, ok=True, ms=self._elapsed(self._step_started), detail=handle.detail)
        self.diagnosis.steps.append(done)
        report_step(self.kind, done)
        self.current = None

    def fail(
        self, name: str, code: Code, message: str, *, detail: str = "", cause: str = ""
    ) -> None:
        failed = Step(name=name, ok=False, ms=self._elapsed(self._step_started), detail=detail)
        self.diagnosis.steps.append(failed)
        report_step(self.kind, failed)
        self.diagnosis.error = DiagnosisError(
            code=code,
            message=message,
            hint=hint_for(
                code,
                protocol=self.protocol,
                host=self.host,
                port=self.port,
                security=self.security,
                cause=cause,
            ),
        )
        self.current = None

    def finish(self) -> Diagnosis:
        self.diagnosis.ok = self.diagnosis.error is None
        self.diagnosis.total_ms = self._elapsed(self._started)
        return self.diagnosis

    @staticmethod
    def _elapsed(since: float) -> float:
        return round((time.perf_counter() - since) * 1000, 1)
