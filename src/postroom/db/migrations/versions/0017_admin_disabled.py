"""admin accounts can be disabled (admins.disabled_at)

A disabled account cannot sign in or ask for a reset link; disabling it ends its sessions.

Revision ID: 0017_admin_disabled
Revises: 0016_inbound_held_bounces
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0017_admin_disabled"
down_revision = "0016_inbound_held_bounces"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("admins") as batch:
        batch.add_column(sa.Column("disabled_at", sa.DateTime(timezone=True), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("admins") as batch:
        batch.drop_column("disabled_at")
