"""who created each message and action; what an API key may send as

A sender key reads only the messages and actions it created (``created_by`` = the key's
id; ``NULL`` for the platform's own mail, notifications and the Python API), and may be
limited to some processes and profiles (``api_keys.processes`` / ``.profiles``, JSON lists
of names; ``NULL`` = no limit). The outbox column is written in the same INSERT as the
rest of the row; its index is partial, so mail without a key (most of it, and every
message of the hot path's benchmark) adds no index entry. Why: docs/security.md,
"What a sender key sees".

Revision ID: 0013_sender_ownership
Revises: 0012_action_webhook_secrets
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0013_sender_ownership"
down_revision = "0012_action_webhook_secrets"
branch_labels = None
depends_on = "0005_actions"  # action_requests gains a column too

_OWNED = "created_by IS NOT NULL"


def upgrade() -> None:
    op.add_column("api_keys", sa.Column("processes", sa.JSON(), nullable=True))
    op.add_column("api_keys", sa.Column("profiles", sa.JSON(), nullable=True))
    op.add_column("outbox_messages", sa.Column("created_by", sa.Integer(), nullable=True))
    op.create_index(
        "ix_outbox_created_by",
        "outbox_messages",
        ["created_by", "id"],
        sqlite_where=sa.text(_OWNED),
        postgresql_where=sa.text(_OWNED),
    )
    op.add_column("action_requests", sa.Column("created_by", sa.Integer(), nullable=True))


def downgrade() -> None:
    # plain ALTER TABLE … DROP COLUMN (SQLite ≥ 3.35): a batch copy of outbox_messages
    # would have to rebuild its partial indexes from reflection
    op.drop_column("action_requests", "created_by")
    op.drop_index("ix_outbox_created_by", table_name="outbox_messages")
    op.drop_column("outbox_messages", "created_by")
    op.drop_column("api_keys", "profiles")
    op.drop_column("api_keys", "processes")
