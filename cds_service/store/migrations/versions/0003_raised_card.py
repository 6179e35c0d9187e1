"""Cards raised once per hook instance: (hookInstance, card kind) with an expiry.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "raised_card",
        sa.Column("hook_instance", sa.String(256), nullable=False),
        sa.Column("kind", sa.String(64), nullable=False),
        sa.Column("expires_at", sa.Float, nullable=False),
        sa.PrimaryKeyConstraint("hook_instance", "kind", name="pk_raised_card"),
    )
    op.create_index("ix_raised_card_expires", "raised_card", ["expires_at"])


def downgrade() -> None:
    op.drop_table("raised_card")
