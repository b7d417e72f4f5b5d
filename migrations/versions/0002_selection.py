"""setup-tool bookkeeping: what a marking step selected by (invites-since, footprints)

A marking step that stops before staging its candidates is resumed by selecting again; it must
select exactly as it would have, so the step keeps invites-since and the footprints it counted.

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-02
"""

import sqlalchemy as sa
from alembic import context, op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

schema = context.config.attributes.get("schema")


def upgrade() -> None:
    op.add_column("setup_tool_step", sa.Column("invites_since", sa.DateTime), schema=schema)
    op.add_column("setup_tool_step", sa.Column("footprints", sa.String(60)), schema=schema)


def downgrade() -> None:
    op.drop_column("setup_tool_step", "footprints", schema=schema)
    op.drop_column("setup_tool_step", "invites_since", schema=schema)
