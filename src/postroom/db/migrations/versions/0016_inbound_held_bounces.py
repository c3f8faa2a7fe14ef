"""bounce notices held until the send they report is recorded

A genuine DSN that arrived while its message was still ``sending`` (or queued again) was
stored and never applied: the outbox message stayed ``sent``. It now waits in
``inbound_held_bounces`` and the queue applies it when it records ``sent``.

Revision ID: 0016_inbound_held_bounces
Revises: 0015_sessions_and_throttles
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0016_inbound_held_bounces"
down_revision = "0015_sessions_and_throttles"
branch_labels = None
depends_on = "0004_inbound"  # inbound_messages is on its own branch


def upgrade() -> None:
    op.create_table(
        "inbound_held_bounces",
        sa.Column("inbound_id", sa.Integer(), nullable=False),
        sa.Column("outbox_id", sa.Integer(), nullable=False),
        sa.Column("summary", sa.Text(), nullable=True),
        sa.Column("code", sa.Integer(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["inbound_id"], ["inbound_messages.id"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["outbox_id"], ["outbox_messages.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("inbound_id"),
    )
    op.create_index("ix_inbound_held_bounces_outbox_id", "inbound_held_bounces", ["outbox_id"])


def downgrade() -> None:
    op.drop_index("ix_inbound_held_bounces_outbox_id", table_name="inbound_held_bounces")
    op.drop_table("inbound_held_bounces")
