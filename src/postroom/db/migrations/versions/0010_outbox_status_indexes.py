"""fewer index writes per state change of an outbox message

``ix_outbox_due (status, due_at)`` was rewritten at every state change of every message
(queued → sending → sent). What it served is served otherwise now: claims walk
``ix_outbox_ready``, the expired-lease scan goes by profile through
``ix_outbox_profile_status``, and listing the rare states (retrying, failed, bounced,
cancelled) uses the new partial ``ix_outbox_attention``, which a message that is simply
sent never enters. Why: docs/decisions/0006-outbox-storage.md.

Revision ID: 0010_outbox_status_indexes
Revises: 0009_outbox_ready_index
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0010_outbox_status_indexes"
down_revision = "0009_outbox_ready_index"
branch_labels = None
depends_on = None

_ATTENTION = "status IN ('retrying', 'failed', 'bounced', 'cancelled')"
_READY = "status IN ('queued', 'retrying')"


def _ready_index(*extra: str) -> None:
    op.create_index(
        "ix_outbox_ready",
        "outbox_messages",
        [sa.text("priority DESC"), "due_at", *extra],
        sqlite_where=sa.text(_READY),
        postgresql_where=sa.text(_READY),
    )


def upgrade() -> None:
    op.drop_index("ix_outbox_due", table_name="outbox_messages")
    op.drop_index("ix_outbox_ready", table_name="outbox_messages")
    _ready_index("profile_id", "status")
    op.drop_index("ix_outbox_profile_status", table_name="outbox_messages")
    op.create_index(
        "ix_outbox_profile_status", "outbox_messages", ["profile_id", "status", "lease_until"]
    )
    op.create_index(
        "ix_outbox_attention",
        "outbox_messages",
        ["status", "id"],
        sqlite_where=sa.text(_ATTENTION),
        postgresql_where=sa.text(_ATTENTION),
    )


def downgrade() -> None:
    op.drop_index("ix_outbox_profile_status", table_name="outbox_messages")
    op.create_index("ix_outbox_profile_status", "outbox_messages", ["profile_id", "status"])
    op.drop_index("ix_outbox_ready", table_name="outbox_messages")
    _ready_index()
    op.drop_index("ix_outbox_attention", table_name="outbox_messages")
    op.create_index("ix_outbox_due", "outbox_messages", ["status", "due_at"], unique=False)
