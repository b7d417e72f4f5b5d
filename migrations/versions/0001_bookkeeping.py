"""setup-tool bookkeeping: runs, steps with checkpoints, previous values, marking candidates

Revision ID: 0001
Revises:
Create Date: 2026-11-25
"""

import sqlalchemy as sa

# A frozen snapshot of the tables as this revision creates them: the live definitions in
# setup_tool/bookkeeping.py move on, a migration never does.
from alembic import context, op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

schema = context.config.attributes.get("schema")


def upgrade() -> None:
    op.create_table(
        "setup_tool_run",
        sa.Column("run_id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("mode", sa.String(20), nullable=False),
        sa.Column("status", sa.String(20), nullable=False),
        sa.Column("started_at", sa.DateTime, nullable=False),
        sa.Column("finished_at", sa.DateTime),
        sa.Column("outcome", sa.String(30)),
        sa.Column("exit_code", sa.Integer),
        sa.Column("tool_version", sa.String(40), nullable=False),
        sa.Column("host", sa.String(255), nullable=False),
        sa.Column("os_user", sa.String(255), nullable=False),
        sa.Column("acting_associate_id", sa.Integer, nullable=False),
        sa.Column("superoffice_version", sa.String(255)),
        sa.Column("synchronizer_version", sa.String(255)),
        sa.Column("preference_on_at", sa.DateTime),
        sa.Column("undone_by_run_id", sa.Integer),
        sa.Column("report_json", sa.UnicodeText),
        schema=schema,
    )
    op.create_table(
        "setup_tool_step",
        sa.Column("step_row_id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("run_id", sa.Integer, nullable=False),
        sa.Column("step_key", sa.String(40), nullable=False),
        sa.Column("status", sa.String(20), nullable=False),
        sa.Column("rows_planned", sa.Integer, nullable=False),
        sa.Column("rows_changed", sa.Integer, nullable=False),
        sa.Column("window_from", sa.DateTime),
        sa.Column("window_until", sa.DateTime),
        sa.Column("checkpoint_key", sa.BigInteger),
        sa.Column("batches_done", sa.Integer, nullable=False),
        sa.Column("started_at", sa.DateTime, nullable=False),
        sa.Column("finished_at", sa.DateTime),
        schema=schema,
    )
    op.create_index("ix_setup_tool_step_run_id", "setup_tool_step", ["run_id"], schema=schema)
    op.create_table(
        "setup_tool_previous_value",
        sa.Column(
            "previous_value_id",
            sa.BigInteger().with_variant(sa.Integer, "sqlite"),
            primary_key=True,
            autoincrement=True,
        ),
        sa.Column("step_row_id", sa.Integer, nullable=False),
        sa.Column("batch_no", sa.Integer, nullable=False),
        sa.Column("table_name", sa.String(64), nullable=False),
        sa.Column("record_id", sa.Integer, nullable=False),
        sa.Column("inserted", sa.SmallInteger, nullable=False),
        sa.Column("caution_warning", sa.SmallInteger),
        sa.Column("prefvalue", sa.String(2000)),
        sa.Column("updated", sa.DateTime),
        sa.Column("updated_associate_id", sa.Integer),
        sa.Column("updated_count", sa.Integer),
        sa.Column("new_updated_count", sa.Integer),
        sa.Column("new_updated", sa.DateTime),
        schema=schema,
    )
    op.create_index(
        "ix_setup_tool_previous_value_step_batch",
        "setup_tool_previous_value",
        ["step_row_id", "batch_no"],
        schema=schema,
    )
    op.create_table(
        "setup_tool_candidate",
        sa.Column("step_row_id", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("appointment_id", sa.Integer, primary_key=True, autoincrement=False),
        schema=schema,
    )


def downgrade() -> None:
    for table in (
        "setup_tool_candidate",
        "setup_tool_previous_value",
        "setup_tool_step",
        "setup_tool_run",
    ):
        op.drop_table(table, schema=schema)
