"""The state layer: audit trail, issued cards, feedback, replay protection.

Revision ID: 0001
Revises:
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "guidance_response",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("request_identifier", sa.String(256), nullable=False),
        sa.Column("module", sa.String(256), nullable=False),
        sa.Column("subject", sa.String(300), nullable=True),
        sa.Column("occurred_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("status", sa.String(32), nullable=False),
        sa.Column("resource", sa.Text, nullable=False),
    )
    op.create_index("ix_guidance_response_subject", "guidance_response", ["subject", "occurred_at"])
    op.create_index("ix_guidance_response_request", "guidance_response", ["request_identifier"])
    op.create_index("ix_guidance_response_occurred", "guidance_response", ["occurred_at"])

    op.create_table(
        "issued_card",
        sa.Column("card_uuid", sa.String(64), primary_key=True),
        sa.Column("guidance_response_id", sa.String(64), nullable=False),
        sa.Column("service", sa.String(128), nullable=False),
        sa.Column("kind", sa.String(64), nullable=False),
        sa.Column("suggestions", sa.Text, nullable=False),
        sa.Column("issued_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_issued_card_issued", "issued_card", ["issued_at"])
    op.create_index("ix_issued_card_response", "issued_card", ["guidance_response_id"])

    op.create_table(
        "card_rule",
        sa.Column("card_uuid", sa.String(64), nullable=False),
        sa.Column("rule_id", sa.String(16), nullable=False),
        sa.PrimaryKeyConstraint("card_uuid", "rule_id", name="pk_card_rule"),
    )
    op.create_index("ix_card_rule_rule", "card_rule", ["rule_id"])

    op.create_table(
        "feedback",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("dedupe_key", sa.String(64), nullable=False),
        sa.Column("service", sa.String(128), nullable=False),
        sa.Column("card_uuid", sa.String(256), nullable=False),
        sa.Column("outcome", sa.String(16), nullable=False),
        sa.Column("accepted_suggestions", sa.Text, nullable=False),
        sa.Column("unknown_suggestions", sa.Text, nullable=False),
        sa.Column("override_reason_system", sa.String(256), nullable=True),
        sa.Column("override_reason_code", sa.String(128), nullable=True),
        sa.Column("outcome_timestamp", sa.String(64), nullable=False),
        sa.Column("card_known", sa.Boolean, nullable=False),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
        sa.UniqueConstraint("dedupe_key", name="uq_feedback_dedupe_key"),
    )
    op.create_index("ix_feedback_card", "feedback", ["card_uuid"])
    op.create_index("ix_feedback_received", "feedback", ["received_at"])

    op.create_table(
        "replay_token",
        sa.Column("iss", sa.String(512), nullable=False),
        sa.Column("jti", sa.String(256), nullable=False),
        sa.Column("expires_at", sa.Float, nullable=False),
        sa.PrimaryKeyConstraint("iss", "jti", name="pk_replay_token"),
    )
    op.create_index("ix_replay_token_expires", "replay_token", ["expires_at"])


def downgrade() -> None:
    for table in ("replay_token", "feedback", "card_rule", "issued_card", "guidance_response"):
        op.drop_table(table)
