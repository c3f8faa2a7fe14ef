"""Shared fixtures: a Postroom on SQLite and on PostgreSQL, and the real mail servers."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text

from postroom import Postroom
from postroom.db.tables import Base
from postroom.settings import Settings

pytest_plugins = (
    ["tests.harness.fixtures"]
    if (Path(__file__).parent / "harness" / "fixtures.py").exists()
    else []
)

PG_URL = os.environ.get("POSTROOM_TEST_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")
REQUIRE_SERVICES = os.environ.get("POSTROOM_REQUIRE_SERVICES") == "1"


def require_service(what: str, reason: str) -> None:
    """Fail in CI (POSTROOM_REQUIRE_SERVICES=1), skip locally, when a service is missing."""
    message = f"{what} is not available: {reason}"
    if REQUIRE_SERVICES:
        pytest.fail(message + " (POSTROOM_REQUIRE_SERVICES=1: CI must not skip)", pytrace=False)
    pytest.skip(message)


@pytest.fixture(scope="session")
def pg_schema_url() -> Iterator[str]:
    """A PostgreSQL URL whose search_path is a fresh schema, dropped at the end."""
    schema = f"postroom_test_{uuid.uuid4().hex[:10]}"
    try:
        engine = create_engine(PG_URL, pool_pre_ping=True)
        with engine.begin() as conn:
            conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    except Exception as exc:  # noqa: BLE001 - any connection fault means "not available"
        require_service("PostgreSQL at 127.0.0.1:5432", str(exc).splitlines()[0])
    sep = "&" if "?" in PG_URL else "?"
    yield f"{PG_URL}{sep}options=-csearch_path%3D{schema}"
    with engine.begin() as conn:
        conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
    engine.dispose()


def _truncate(app: Postroom) -> None:
    with app.engine.begin() as conn:
        for table in reversed(Base.metadata.sorted_tables):
            conn.execute(table.delete())


@pytest.fixture(params=["sqlite", "postgresql"])
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def app_factory(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[object]:
    """Builds Postroom instances on a given backend; closes and cleans them afterwards."""
    opened: list[Postroom] = []

    def make(backend: str = "sqlite", **overrides: object) -> Postroom:
        url = None
        if backend == "postgresql":
            url = request.getfixturevalue("pg_schema_url")
        settings = Settings(
            data_dir=tmp_path / "data",
            database_url=url,
            **overrides,  # type: ignore[arg-type]
        )
        app = Postroom.open(settings=settings)
        opened.append(app)
        return app

    yield make
    for app in opened:
        if app.settings.database_url:
            _truncate(app)
        app.close()


@pytest.fixture
def app(app_factory, backend: str) -> Postroom:  # type: ignore[no-untyped-def]
    """A fresh Postroom, once on SQLite and once on PostgreSQL."""
    return app_factory(backend)  # type: ignore[no-any-return]


@pytest.fixture
def sqlite_app(app_factory) -> Postroom:  # type: ignore[no-untyped-def]
    return app_factory("sqlite")  # type: ignore[no-any-return]


def basic_profile(name: str = "QA alerts", **smtp: object) -> dict[str, object]:
    """A valid profile payload with basic auth."""
    return {
        "name": name,
        "smtp": {
            "host": "smtp.example.com",
            "port": 587,
            "security": "starttls",
            "auth": "basic",
            "username": "qa@example.com",
            "password": "CANARY-7f3a-secret",
            **smtp,
        },
        "sender": {"from_address": "qa@example.com", "from_name": "QA alerts"},
    }


def clear_default(app: Postroom) -> None:
    """Remove the system default: the first profile created becomes it (issue 22 item 4),
    and tests of what happens without one start from there."""
    from sqlalchemy import delete

    from postroom.db.tables import SystemSetting
    from postroom.profiles.service import DEFAULT_PROFILE_KEY

    with app.sessions() as s:
        s.execute(delete(SystemSetting).where(SystemSetting.key == DEFAULT_PROFILE_KEY))
        s.commit()
