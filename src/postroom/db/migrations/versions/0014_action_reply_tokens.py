"""replies prove who sent them: per-recipient reply tokens, recorded replies

A reply used to decide an action when its subject carried the action id and its From
named a recipient — neither proves anything. Each recipient's request mail now names a
plus-addressed reply address with a random token; ``action_messages.reply_token_hash``
keeps its SHA-256. Every reply to a request is recorded in ``action_replies`` (decided or
refused, why, and the receiving server's Authentication-Results); the verdict of the
deciding reply is ``action_requests.decided_auth``.

Revision ID: 0014_action_reply_tokens
Revises: 0013_sender_ownership
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0014_action_reply_tokens"
down_revision = "0013_sender_ownership"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("action_requests") as batch:
        batch.add_column(sa.Column("decided_auth", sa.Text(), nullable=True))
    with op.batch_alter_table("action_messages") as batch:
        batch.add_column(sa.Column("reply_token_hash", sa.String(length=64), nullable=True))
        batch.create_index("ix_action_messages_reply_token_hash", ["reply_token_hash"])
    op.create_table(
        "action_replies",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("action_id", sa.String(length=40), nullable=False),
        sa.Column("inbound_id", sa.Integer(), nullable=True),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("from_address", sa.String(length=320), nullable=True),
        sa.Column("outcome", sa.String(length=20), nullable=False),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column("authentication", sa.Text(), nullable=False),
        sa.ForeignKeyConstraint(["action_id"], ["action_requests.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_action_replies_action_id", "action_replies", ["action_id"])


def downgrade() -> None:
    op.drop_index("ix_action_replies_action_id", table_name="action_replies")
    op.drop_table("action_replies")
    with op.batch_alter_table("action_messages") as batch:
        batch.drop_index("ix_action_messages_reply_token_hash")
        batch.drop_column("reply_token_hash")
    with op.batch_alter_table("action_requests") as batch:
        batch.drop_column("decided_auth")
