"""The SuperOffice tables the tool reads or writes, as SQLAlchemy Core tables.

Two ways to get them:
- `canonical_tables(schema)`: the names as SuperOffice documents them (used to build the demo
  database and to compile statements for SQL Server without a server);
- `reflect_tables(conn, schema)`: the names as the database really stores them, matched
  case-insensitively (a DBA script on PostgreSQL stores `cautionWarning` as `cautionwarning`).

Either way, code addresses columns by their documented name: `tables.appointment.c.cautionWarning`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from sqlalchemy import (
    Column,
    Connection,
    DateTime,
    Integer,
    LargeBinary,
    MetaData,
    SmallInteger,
    String,
    Table,
    inspect,
)
from sqlalchemy.exc import DBAPIError
from sqlalchemy.types import TypeEngine

from setup_tool.errors import NotSuperOfficeError, UsageError

_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,127}$")

# (documented name, type, nullable). The first column is the primary key (plain int, no identity).
ColumnSpec = tuple[str, type[TypeEngine[Any]] | TypeEngine[Any], bool]

_REGISTERED_UPDATED: list[ColumnSpec] = [
    ("registered", DateTime, False),
    ("registered_associate_id", Integer, False),
    ("updated", DateTime, False),
    ("updated_associate_id", Integer, False),
    ("updatedCount", Integer, False),  # 16-bit unsigned in SuperOffice: wider than smallint
]

TABLE_SPECS: dict[str, list[ColumnSpec]] = {
    "appointment": [
        ("appointment_id", Integer, False),
        ("contact_id", Integer, False),
        ("person_id", Integer, False),
        ("associate_id", Integer, False),
        *_REGISTERED_UPDATED,
        ("type", SmallInteger, False),
        ("status", SmallInteger, False),
        ("mother_id", Integer, False),
        ("invitedPersonId", Integer, False),
        ("emailId", Integer, False),
        ("activeDate", DateTime, False),
        ("do_by", DateTime, False),
        ("endDate", DateTime, False),
        ("cautionWarning", SmallInteger, True),
        ("mother_associate_id", Integer, False),
    ],
    "UserPreference": [
        ("userpreference_id", Integer, False),
        ("deflevel", SmallInteger, False),
        ("maxlevel", SmallInteger, False),
        ("owner_id", Integer, False),
        ("prefsection", String(255), False),
        ("prefkey", String(255), False),
        ("prefvalue", String(2000), True),
        *_REGISTERED_UPDATED,
    ],
    "ProductVersion": [
        ("ProductVersion_id", Integer, False),
        ("ownerName", String(255), False),
        ("codeName", String(255), False),
        ("version", String(255), False),
        ("comment", String(2000), True),
        ("updatePath", String(2000), True),
        *_REGISTERED_UPDATED,
    ],
    "sequence": [
        ("id", Integer, False),
        ("next_id", Integer, False),
        ("TableName", String(255), False),
        ("TableNumber", Integer, False),
    ],
    "travelcurrent": [
        ("travelcurrent_id", Integer, False),
        ("current_id", Integer, False),
        ("systemlevel", SmallInteger, False),
    ],
    "traveltransactionlog": [
        ("traveltransactionlog_id", Integer, False),
        ("ttime", DateTime, False),
        ("prev_record_id", Integer, False),
        ("type", Integer, False),
        ("associate_id", Integer, False),
        ("tablenumber", Integer, False),
        ("record_id", Integer, False),
        ("flags", Integer, False),
        ("application_id", Integer, False),
    ],
    "DatabaseModel": [
        ("DatabaseModel_id", Integer, False),
        ("ModelVersion", String(255), False),
        ("ModelData", LargeBinary, True),
    ],
    # Licence tables: only the columns the tool reads (SuperOffice's have many more).
    "ModuleOwner": [
        ("ModuleOwner_id", Integer, False),
        ("ownerName", String(239), False),
        ("ownerDescription", String(254), True),
    ],
    "ModuleLicense": [
        ("ModuleLicense_id", Integer, False),
        ("ModuleOwner_id", Integer, False),
        ("moduleName", String(239), False),
        ("moduleDescription", String(254), True),
    ],
    # Read-only context for reports and the demo; never written by the tool.
    "person": [
        ("person_id", Integer, False),
        ("contact_id", Integer, False),
        ("firstname", String(255), False),
        ("lastname", String(255), False),
        *_REGISTERED_UPDATED,
    ],
    "associate": [
        ("associate_id", Integer, False),
        ("name", String(255), False),
        ("person_id", Integer, False),
    ],
}

# Tables without which the tool cannot do its work; the rest are optional evidence.
REQUIRED_TABLES = ("appointment", "UserPreference", "sequence")

# Columns newer SuperOffice versions add; read when present, never required.
OPTIONAL_COLUMNS = {"appointment": ("SendEmail", "owned_externally")}


@dataclass(frozen=True)
class SuperOfficeTables:
    """The SuperOffice tables of one database (None where an optional table is absent)."""

    schema: str | None
    appointment: Table
    userpreference: Table
    sequence: Table
    productversion: Table | None
    travelcurrent: Table | None
    traveltransactionlog: Table | None
    databasemodel: Table | None
    moduleowner: Table | None
    modulelicense: Table | None
    person: Table | None
    associate: Table | None


def validate_table_prefix(prefix: str | None) -> str | None:
    """A table prefix is a schema name: identifiers only, so it can never smuggle SQL."""
    if prefix in (None, ""):
        return None
    assert prefix is not None
    if not _IDENTIFIER.match(prefix):
        raise UsageError(
            f"Invalid table prefix {prefix!r}: it must be an identifier "
            "(letters, digits and underscores, not starting with a digit).",
            "Use --table-prefix crm7 (the SuperOffice default) or your database's schema name.",
        )
    return prefix


def _table(
    metadata: MetaData,
    canonical: str,
    schema: str | None,
    actual_name: str | None = None,
    actual_columns: dict[str, str] | None = None,
    small_columns: frozenset[str] = frozenset(),
) -> Table:
    columns = []
    for index, (name, type_, nullable) in enumerate(TABLE_SPECS[canonical]):
        physical = actual_columns.get(name.lower(), name) if actual_columns else name
        if name.lower() in small_columns:
            type_ = SmallInteger  # as stored: a DBA's SMALLINT caps counters at 32767
        columns.append(
            Column(
                physical,
                type_,
                key=name,
                primary_key=index == 0,
                nullable=nullable,
                autoincrement=False,
            )
        )
    for name in OPTIONAL_COLUMNS.get(canonical, ()):
        if actual_columns and name.lower() in actual_columns:
            columns.append(Column(actual_columns[name.lower()], SmallInteger, key=name))
    return Table(actual_name or canonical, metadata, *columns, schema=schema)


def _build(tables: dict[str, Table | None], schema: str | None) -> SuperOfficeTables:
    def required(name: str) -> Table:
        table = tables.get(name)
        assert table is not None
        return table

    return SuperOfficeTables(
        schema=schema,
        appointment=required("appointment"),
        userpreference=required("UserPreference"),
        sequence=required("sequence"),
        productversion=tables.get("ProductVersion"),
        travelcurrent=tables.get("travelcurrent"),
        traveltransactionlog=tables.get("traveltransactionlog"),
        databasemodel=tables.get("DatabaseModel"),
        moduleowner=tables.get("ModuleOwner"),
        modulelicense=tables.get("ModuleLicense"),
        person=tables.get("person"),
        associate=tables.get("associate"),
    )


def canonical_metadata(schema: str | None = None) -> MetaData:
    """All SuperOffice tables with their documented names (the demo database builds from this)."""
    metadata = MetaData()
    for canonical in TABLE_SPECS:
        _table(metadata, canonical, schema)
    return metadata


def canonical_tables(schema: str | None = None) -> SuperOfficeTables:
    metadata = canonical_metadata(schema)
    return _build({name: metadata.tables[_qualified(name, schema)] for name in TABLE_SPECS}, schema)


def _qualified(name: str, schema: str | None) -> str:
    return f"{schema}.{name}" if schema else name


def reflect_tables(conn: Connection, schema: str | None) -> SuperOfficeTables:
    """Find the SuperOffice tables as stored, or explain precisely why this is not SuperOffice."""
    inspector = inspect(conn)
    where = f"schema '{schema}'" if schema else "the database"
    try:
        stored = {name.lower(): name for name in inspector.get_table_names(schema=schema)}
    except DBAPIError:  # SQLite: an unknown schema is an error, not an empty list
        raise NotSuperOfficeError(
            f"This does not look like a SuperOffice database: {where} does not exist.",
            "Check --table-prefix (SQLite databases normally have none).",
        ) from None
    missing_tables = [name for name in REQUIRED_TABLES if name.lower() not in stored]
    if missing_tables:
        raise NotSuperOfficeError(
            f"This does not look like a SuperOffice database: {where} has no "
            f"{', '.join(missing_tables)} table.",
            "Check --database / --database-url and --table-prefix "
            "(SuperOffice uses crm7 by default).",
        )
    metadata = MetaData()
    tables: dict[str, Table | None] = {}
    missing_columns: list[str] = []
    for canonical in TABLE_SPECS:
        actual = stored.get(canonical.lower())
        if actual is None:
            tables[canonical] = None
            continue
        reflected = inspector.get_columns(actual, schema)
        columns = {c["name"].lower(): c["name"] for c in reflected}
        small = frozenset(
            c["name"].lower()
            for c in reflected
            if isinstance(c["type"], SmallInteger) and c["name"].lower() == "updatedcount"
        )
        absent = [name for name, _, _ in TABLE_SPECS[canonical] if name.lower() not in columns]
        if absent and canonical in REQUIRED_TABLES:
            missing_columns += [f"{canonical}.{name}" for name in absent]
        if absent and canonical not in REQUIRED_TABLES:
            tables[canonical] = None  # optional evidence table of another shape: ignore it
            continue
        tables[canonical] = _table(metadata, canonical, schema, actual, columns, small)
    if missing_columns:
        raise NotSuperOfficeError(
            f"The SuperOffice tables in {where} lack columns this tool needs: "
            f"{', '.join(missing_columns)}.",
            "appointment.cautionWarning arrives with SuperOffice database step 45; upgrade "
            "SuperOffice to 8.5 R10 or newer first.",
        )
    return _build(tables, schema)
