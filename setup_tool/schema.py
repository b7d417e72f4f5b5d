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
from typing import Any, NamedTuple

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


class ColumnSpec(NamedTuple):
    """One documented column. `needed`: the tool reads or writes it, so a table lacks it only
    when this is not the table the tool knows (a required table then stops the run); a column
    that is not needed is used when present and reported as absent otherwise."""

    name: str
    type: type[TypeEngine[Any]] | TypeEngine[Any]
    nullable: bool = False
    needed: bool = True


def _optional(
    name: str, type_: type[TypeEngine[Any]] | TypeEngine[Any], nullable: bool = True
) -> ColumnSpec:
    return ColumnSpec(name, type_, nullable, needed=False)


_REGISTERED_UPDATED: list[ColumnSpec] = [
    ColumnSpec("registered", DateTime),
    _optional("registered_associate_id", Integer, False),
    ColumnSpec("updated", DateTime),
    ColumnSpec("updated_associate_id", Integer),
    ColumnSpec("updatedCount", Integer),  # 16-bit unsigned in SuperOffice: wider than smallint
]

# The first column of each table is its primary key (plain int, no identity). Sources: SOD
# `docs/en/database/tables/<table>.md` (SuperOfficeDocs/superoffice-docs).
TABLE_SPECS: dict[str, list[ColumnSpec]] = {
    "appointment": [
        ColumnSpec("appointment_id", Integer),
        _optional("contact_id", Integer, False),
        _optional("person_id", Integer, False),
        ColumnSpec("associate_id", Integer),  # whose diary; 0 on an external participant's row
        *_REGISTERED_UPDATED,
        _optional("type", SmallInteger, False),
        _optional("status", SmallInteger, False),
        ColumnSpec("mother_id", Integer),
        _optional("invitedPersonId", Integer, False),
        ColumnSpec("emailId", Integer),  # footprint (c) of the invite system
        ColumnSpec("activeDate", DateTime),  # the synchronizer's sync range is about this date
        _optional("do_by", DateTime, False),
        _optional("endDate", DateTime, False),
        ColumnSpec("cautionWarning", SmallInteger, True),  # SuperOffice database step 45
        # Used when present (SPEC: columns that came after 8.5 R10 are never required).
        _optional("recurrenceRuleId", Integer),  # a recurring series: marked whole or not at all
        _optional("mother_associate_id", Integer),  # SuperOffice step 60, after spring 2020
        _optional("SendEmail", SmallInteger),  # footprint (b)
        _optional("owned_externally", SmallInteger),  # 2 Outlook, 3 Google: never marked
    ],
    "UserPreference": [
        ColumnSpec("userpreference_id", Integer),
        ColumnSpec("deflevel", SmallInteger),
        ColumnSpec("maxlevel", SmallInteger),
        ColumnSpec("owner_id", Integer),
        ColumnSpec("prefsection", String(255)),
        ColumnSpec("prefkey", String(255)),
        ColumnSpec("prefvalue", String(2000), True),
        *_REGISTERED_UPDATED,
    ],
    "ProductVersion": [
        ColumnSpec("ProductVersion_id", Integer),
        ColumnSpec("ownerName", String(255)),
        ColumnSpec("codeName", String(255)),
        ColumnSpec("version", String(255)),
        _optional("comment", String(2000)),
        _optional("updatePath", String(2000)),
        *_REGISTERED_UPDATED,
    ],
    "sequence": [
        ColumnSpec("id", Integer),
        ColumnSpec("next_id", Integer),
        ColumnSpec("TableName", String(255)),
        ColumnSpec("TableNumber", Integer),
    ],
    "travelcurrent": [
        ColumnSpec("travelcurrent_id", Integer),
        ColumnSpec("current_id", Integer),
        ColumnSpec("systemlevel", SmallInteger),
    ],
    "traveltransactionlog": [
        ColumnSpec("traveltransactionlog_id", Integer),
        ColumnSpec("ttime", DateTime),
        ColumnSpec("prev_record_id", Integer),
        ColumnSpec("type", Integer),
        ColumnSpec("associate_id", Integer),
        ColumnSpec("tablenumber", Integer),
        ColumnSpec("record_id", Integer),
        ColumnSpec("flags", Integer),
        ColumnSpec("application_id", Integer),
    ],
    "DatabaseModel": [
        ColumnSpec("DatabaseModel_id", Integer),
        ColumnSpec("ModelVersion", String(255)),
        ColumnSpec("ModelData", LargeBinary, True),
    ],
    # Licence tables: only the columns the tool reads (SuperOffice's have many more).
    "ModuleOwner": [
        ColumnSpec("ModuleOwner_id", Integer),
        ColumnSpec("ownerName", String(239)),
        _optional("ownerDescription", String(254)),
    ],
    "ModuleLicense": [
        ColumnSpec("ModuleLicense_id", Integer),
        ColumnSpec("ModuleOwner_id", Integer),
        ColumnSpec("moduleName", String(239)),
        _optional("moduleDescription", String(254)),
    ],
    # Footprint (a) of the invite system: "invitations (iCal) leading to appointments", added by
    # SuperOffice's dictionary "invitation" step 1 (SOD tables/invitation.md; release notes 9.2).
    "invitation": [
        ColumnSpec("invitation_id", Integer),
        _optional("event_uid", String(255)),
        _optional("event_sequence", Integer),
        _optional("event_dtstamp", DateTime),
        ColumnSpec("appointment_id", Integer),  # "the id of the mother appointment record"
        _optional("organizer_email", String(255)),
        _optional("organizer_fullname", String(255)),
        _optional("recurring_start_date", DateTime),
        _optional("recurring_end_date", DateTime),
        _optional("template_language", String(10)),
        *_REGISTERED_UPDATED,
    ],
    # Read-only context for reports and the demo; never written by the tool.
    "person": [
        ColumnSpec("person_id", Integer),
        ColumnSpec("contact_id", Integer),
        ColumnSpec("firstname", String(255)),
        ColumnSpec("lastname", String(255)),
        *_REGISTERED_UPDATED,
    ],
    "associate": [
        ColumnSpec("associate_id", Integer),
        ColumnSpec("name", String(255)),
        ColumnSpec("person_id", Integer),
    ],
}

# Tables without which the tool cannot do its work; the rest are optional evidence.
REQUIRED_TABLES = ("appointment", "UserPreference", "sequence")

# What a genuine 8.5 R10 database may lack (SUPEROFFICE.md, "Columns that arrived after 8.5
# R10"): `setup-tool demo --scenario r10-shape` builds without them.
AFTER_R10_COLUMNS = {"appointment": ("mother_associate_id", "SendEmail", "owned_externally")}
AFTER_R10_TABLES = ("invitation",)


def needed_columns(canonical: str) -> list[str]:
    return [spec.name for spec in TABLE_SPECS[canonical] if spec.needed]


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
    invitation: Table | None

    def has(self, table: Table | None, column: str) -> bool:
        """Does `table` exist here and have the (documented) column?"""
        return table is not None and column in table.c

    def absent_columns(self) -> list[str]:
        """Optional appointment columns and tables this database does not have."""
        absent = [
            f"appointment.{spec.name}"
            for spec in TABLE_SPECS["appointment"]
            if not spec.needed and spec.name not in self.appointment.c
        ]
        return absent + (["invitation table"] if self.invitation is None else [])


def validate_table_prefix(prefix: str | None) -> str | None:
    """A table prefix is a schema name: identifiers only, so it can never smuggle SQL."""
    if prefix in (None, ""):
        return None
    assert prefix is not None
    # fullmatch: `$` in a pattern also matches before a trailing newline ("crm7\n").
    if not _IDENTIFIER.fullmatch(prefix):
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
    omit: tuple[str, ...] = (),
) -> Table:
    """The table with every documented column it has (all of them when `actual_columns` is
    None, less `omit`), each addressed by its documented name whatever the stored spelling."""
    columns = []
    for index, spec in enumerate(TABLE_SPECS[canonical]):
        if spec.name in omit:
            continue
        physical = spec.name
        if actual_columns is not None:
            if spec.name.lower() not in actual_columns:
                continue
            physical = actual_columns[spec.name.lower()]
        type_ = spec.type
        if spec.name.lower() in small_columns:
            type_ = SmallInteger  # as stored: a DBA's SMALLINT caps counters at 32767
        columns.append(
            Column(
                physical,
                type_,
                key=spec.name,
                primary_key=index == 0,
                nullable=spec.nullable,
                autoincrement=False,
            )
        )
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
        invitation=tables.get("invitation"),
    )


def canonical_metadata(schema: str | None = None, *, after_r10: bool = True) -> MetaData:
    """All SuperOffice tables with their documented names (the demo database builds from this).

    `after_r10=False` leaves out what came after 8.5 R10: the shape of a genuine R10 database.
    """
    metadata = MetaData()
    for canonical in TABLE_SPECS:
        if not after_r10 and canonical in AFTER_R10_TABLES:
            continue
        omit = () if after_r10 else AFTER_R10_COLUMNS.get(canonical, ())
        _table(metadata, canonical, schema, omit=omit)
    return metadata


def canonical_tables(schema: str | None = None, *, after_r10: bool = True) -> SuperOfficeTables:
    metadata = canonical_metadata(schema, after_r10=after_r10)
    return _build(
        {name: metadata.tables.get(_qualified(name, schema)) for name in TABLE_SPECS}, schema
    )


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
        absent = [name for name in needed_columns(canonical) if name.lower() not in columns]
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
