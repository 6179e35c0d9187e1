"""The rule ids of a card in one column of issued_card instead of a row each in card_rule.

One row per card is what an answer costs the audit writer; the figures per rule read the
column's JSON array (`cds_service.store.dialect.rule_ids`).

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

_AGGREGATE = {
    "sqlite": "(SELECT json_group_array(rule_id) FROM "
    "(SELECT rule_id FROM card_rule WHERE card_rule.card_uuid = issued_card.card_uuid "
    "ORDER BY rule_id))",
    "postgresql": "COALESCE((SELECT json_agg(rule_id ORDER BY rule_id)::text FROM card_rule "
    "WHERE card_rule.card_uuid = issued_card.card_uuid), '[]')",
}


def upgrade() -> None:
    with op.batch_alter_table("issued_card") as batch:
        batch.add_column(sa.Column("rules", sa.Text, nullable=False, server_default="[]"))
    op.execute(f"UPDATE issued_card SET rules = {_AGGREGATE[op.get_bind().dialect.name]}")
    op.drop_index("ix_card_rule_rule", table_name="card_rule")
    op.drop_table("card_rule")


def downgrade() -> None:
    op.create_table(
        "card_rule",
        sa.Column("card_uuid", sa.String(64), nullable=False),
        sa.Column("rule_id", sa.String(16), nullable=False),
        sa.PrimaryKeyConstraint("card_uuid", "rule_id", name="pk_card_rule"),
    )
    op.create_index("ix_card_rule_rule", "card_rule", ["rule_id"])
    explode = {
        "sqlite": "SELECT DISTINCT card_uuid, value FROM issued_card, json_each(issued_card.rules)",
        "postgresql": "SELECT DISTINCT card_uuid, r FROM issued_card, "
        "jsonb_array_elements_text(issued_card.rules::jsonb) AS r",
    }[op.get_bind().dialect.name]
    op.execute(f"INSERT INTO card_rule (card_uuid, rule_id) {explode}")
    with op.batch_alter_table("issued_card") as batch:
        batch.drop_column("rules")
