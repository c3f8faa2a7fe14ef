"""each action's webhook is signed with a secret of its own

Action webhooks were signed with the key that signs action links, which receivers never
get (and must not: it would let them forge links). Each action with a ``webhook_url`` now
gets its own secret, encrypted like every other stored secret and shown once to the
action's creator. Actions created before have none and their webhooks are not sent.

Revision ID: 0012_action_webhook_secrets
Revises: 0011_outbox_index_conditions
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0012_action_webhook_secrets"
down_revision = "0011_outbox_index_conditions"
branch_labels = None
depends_on = "0005_actions"  # the table it alters (another branch)


def upgrade() -> None:
    with op.batch_alter_table("action_requests") as batch:
        batch.add_column(sa.Column("webhook_secret", sa.Text(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("action_requests") as batch:
        batch.drop_column("webhook_secret")
