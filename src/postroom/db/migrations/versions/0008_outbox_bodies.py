"""outbox message bodies in their own table

A message's state changes three times or more (queued → sending → sent); with the
body in the same row every change rewrote ≈ 2 KB or more per message. Bodies are
written once and only read, so they live beside the row they belong to.
Why: docs/decisions/0004-outbox-throughput.md.

Revision ID: 0008_outbox_bodies
Revises: 0002
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008_outbox_bodies"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "outbox_bodies",
        sa.Column("outbox_id", sa.Integer(), nullable=False),
        sa.Column("raw", sa.LargeBinary(), nullable=False),
        sa.ForeignKeyConstraint(["outbox_id"], ["outbox_messages.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("outbox_id"),
    )
    op.execute("INSERT INTO outbox_bodies (outbox_id, raw) SELECT id, raw FROM outbox_messages")
    # SQLite (>= 3.35) drops a plain column in place; a batch copy of the table would
    # cascade-delete the attempts that reference it while foreign keys are on
    op.execute("ALTER TABLE outbox_messages DROP COLUMN raw")


def downgrade() -> None:
    op.add_column("outbox_messages", sa.Column("raw", sa.LargeBinary(), nullable=True))
    op.execute(
        "UPDATE outbox_messages SET raw = "
        "(SELECT raw FROM outbox_bodies WHERE outbox_bodies.outbox_id = outbox_messages.id)"
    )
    op.drop_table("outbox_bodies")
