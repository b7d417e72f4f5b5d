"""setup-tool bookkeeping: per-batch timings, and which run finished a step

Each committed marking batch keeps its range, rows and duration (the report draws them, the
support log reads them); a step resumed and completed by a later run names that run, so the
history can say what a resumed run finished.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-02
"""

import sqlalchemy as sa
from alembic import context, op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

schema = context.config.attributes.get("schema")


def upgrade() -> None:
    op.add_column("setup_tool_step", sa.Column("finished_by_run_id", sa.Integer), schema=schema)
    op.create_table(
        "setup_tool_batch",
        sa.Column(
            "batch_id",
            sa.BigInteger().with_variant(sa.Integer, "sqlite"),
            primary_key=True,
            autoincrement=True,
        ),
        sa.Column("run_id", sa.Integer, nullable=False),
        sa.Column("step_row_id", sa.Integer, nullable=False),
        sa.Column("batch_no", sa.Integer, nullable=False),
        sa.Column("lo", sa.BigInteger, nullable=False),
        sa.Column("hi", sa.BigInteger, nullable=False),
        sa.Column("rows_changed", sa.Integer, nullable=False),
        sa.Column("seconds", sa.Float, nullable=False),
        sa.Column("finished_at", sa.DateTime, nullable=False),
        schema=schema,
    )
    op.create_index(
        "ix_setup_tool_batch_step_batch",
        "setup_tool_batch",
        ["step_row_id", "batch_no"],
        schema=schema,
    )


def downgrade() -> None:
    op.drop_index("ix_setup_tool_batch_step_batch", "setup_tool_batch", schema=schema)
    op.drop_table("setup_tool_batch", schema=schema)
    op.drop_column("setup_tool_step", "finished_by_run_id", schema=schema)
