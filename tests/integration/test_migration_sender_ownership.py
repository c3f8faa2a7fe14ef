"""Migration 0013: the creator of messages and actions, the limits of API keys; up and down."""

from __future__ import annotations

from sqlalchemy import inspect, text
from sqlalchemy.engine import Engine

from tests.integration.test_outbox_storage import migrated, store_message

__all__ = ["migrated"]  # the fixture, used by name


def test_migration_0013_adds_creators_and_key_limits_and_keeps_the_queue(
    migrated: tuple[str, Engine],
) -> None:
    from alembic import command

    from postroom.db.engine import _alembic_config, upgrade

    db, engine = migrated

    def columns(table: str) -> set[str]:
        return {c["name"] for c in inspect(engine).get_columns(table)}

    upgrade(engine, "0012_action_webhook_secrets")
    upgrade(engine, "0005_actions")
    store_message(engine, "queued")
    assert "created_by" not in columns("outbox_messages")
    upgrade(engine)
    assert "created_by" in columns("outbox_messages") and "created_by" in columns("action_requests")
    assert {"processes", "profiles"} <= columns("api_keys")
    with engine.connect() as conn:
        assert conn.execute(text("SELECT created_by FROM outbox_messages")).all() == [(None,)]
        if db == "sqlite":
            plan = " | ".join(
                str(r[-1])
                for r in conn.exec_driver_sql(
                    "EXPLAIN QUERY PLAN SELECT id FROM outbox_messages WHERE created_by = 7"
                    " AND created_by IS NOT NULL ORDER BY id DESC LIMIT 100"
                )
            )
            assert "ix_outbox_created_by" in plan, plan
    command.downgrade(_alembic_config(engine), "0012_action_webhook_secrets")
    assert "created_by" not in columns("outbox_messages")
    assert "created_by" not in columns("action_requests")
    assert not {"processes", "profiles"} & columns("api_keys")
    with engine.connect() as conn:
        assert conn.execute(text("SELECT status FROM outbox_messages")).scalar() == "queued"
    # and the partial indexes of the queue survived the way down
    assert {"ix_outbox_ready", "ix_outbox_attention"} <= {
        str(i["name"]) for i in inspect(engine).get_indexes("outbox_messages")
    }
