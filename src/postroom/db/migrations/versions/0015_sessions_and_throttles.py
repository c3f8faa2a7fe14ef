"""web sessions and throttle counts in the database (shared by every serve process)

Signed-in sessions were only signed cookies, and sign-outs, password changes and throttle
counts lived in one process's memory: a restart, or a second ``postroom serve`` on the same
database, brought a signed-out cookie back and forgot every failed sign-in.

Revision ID: 0015_sessions_and_throttles
Revises: 0014_action_reply_tokens
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0015_sessions_and_throttles"
down_revision = "0014_action_reply_tokens"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "admin_sessions",
        sa.Column("id_hash", sa.String(length=64), nullable=False),
        sa.Column("admin_id", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["admin_id"], ["admins.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id_hash"),
    )
    op.create_index("ix_admin_sessions_admin_id", "admin_sessions", ["admin_id"])
    op.create_index("ix_admin_sessions_expires_at", "admin_sessions", ["expires_at"])
    op.create_table(
        "throttle_events",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("scope", sa.String(length=30), nullable=False),
        sa.Column("key", sa.String(length=64), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_throttle_events_key_at", "throttle_events", ["key", "at"])
    op.create_index("ix_throttle_events_at", "throttle_events", ["at"])


def downgrade() -> None:
    op.drop_index("ix_throttle_events_at", table_name="throttle_events")
    op.drop_index("ix_throttle_events_key_at", table_name="throttle_events")
    op.drop_table("throttle_events")
    op.drop_index("ix_admin_sessions_expires_at", table_name="admin_sessions")
    op.drop_index("ix_admin_sessions_admin_id", table_name="admin_sessions")
    op.drop_table("admin_sessions")
