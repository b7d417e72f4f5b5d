"""Alembic environment for setup-tool's own tables.

The tool drives alembic from code (setup_tool.bookkeeping): the connection, the schema (the
SuperOffice table prefix) and, for offline SQL scripts, the dialect arrive in config.attributes.
"""

from __future__ import annotations

from alembic import context

from setup_tool.bookkeeping import VERSION_TABLE, bookkeeping_metadata

config = context.config
schema = config.attributes.get("schema")
target_metadata = bookkeeping_metadata(schema)


def run_migrations_offline() -> None:
    context.configure(
        dialect_name=config.attributes.get("dialect_name", "mssql"),
        # e.g. mssql's deprecate_large_types (setup_tool.bookkeeping.bookkeeping_sql).
        dialect_opts=config.attributes.get("dialect_opts") or {},
        output_buffer=config.attributes.get("output_buffer"),
        literal_binds=True,
        target_metadata=target_metadata,
        version_table=VERSION_TABLE,
        version_table_schema=schema,
        transactional_ddl=False,
    )
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    connection = config.attributes["connection"]
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        version_table=VERSION_TABLE,
        version_table_schema=schema,
    )
    # The caller owns the transaction; begin_transaction() joins it.
    with context.begin_transaction():
        context.run_migrations()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
