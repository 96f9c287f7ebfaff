"""Control schema and user triggers on the target.

Triggers are disabled while CDC applies the source's changes (their effects already arrive as
rows) and re-enabled at cutover with the exact DDL saved when they were disabled, in one round trip.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence

import psycopg
from psycopg.rows import dict_row

from migration import sql as sqlfiles
from migration.naming import validate_identifier, validate_schemas

log = logging.getLogger(__name__)

PURPOSE_ENABLE = "enable_user_triggers"
PURPOSE_DISABLE = "disable_user_triggers"

# An identifier as format('%I') prints it: bare lower-case, or double-quoted with "" for a quote.
_IDENT = r'(?:"(?:[^"\x00]|"")+"|[a-z_][a-z0-9_]*)'
_STATEMENT = {
    action: re.compile(rf"ALTER TABLE ONLY {_IDENT}\.{_IDENT} {action} TRIGGER {_IDENT};")
    for action in ("ENABLE", "DISABLE")
}


class TargetPrepError(RuntimeError):
    """The saved trigger DDL is missing, malformed or was saved for other schemas."""


def _statements(ddl: str, action: str, *, field: str) -> int:
    """Count the statements in ``ddl``, refusing anything but the trigger DDL this module generates."""
    if not isinstance(ddl, str):
        raise ValueError(f"{field}: expected DDL text, got {type(ddl).__name__}")
    pattern = _STATEMENT[action]
    pos, count = 0, 0
    text = ddl.strip()
    while pos < len(text):
        match = pattern.match(text, pos)
        if not match:
            raise ValueError(f"{field}: only 'ALTER TABLE ONLY <schema>.<table> {action} TRIGGER <name>;' statements "
                             f"are accepted; unexpected text at character {pos}: {text[pos:pos + 80]!r}")
        count += 1
        pos = match.end()
        while pos < len(text) and text[pos] in " \t\r\n":
            pos += 1
    return count


def create_control_schema(conn: psycopg.Connection, schema: str) -> str:
    """``CREATE SCHEMA IF NOT EXISTS`` (on source and target, as DMS's ControlSchema); returns the name."""
    validate_identifier(schema, field="control_schema")
    try:
        conn.execute(sqlfiles.compose("target_prep_create_schema", schema=schema))
    except psycopg.errors.UniqueViolation:
        pass  # A concurrent run created it between the check and the insert.
    log.info("Control schema %r is present", schema)
    return schema


def _ensure_saved_ddl_table(conn: psycopg.Connection, schema: str) -> None:
    create_control_schema(conn, schema)
    try:
        conn.execute(sqlfiles.compose("target_prep_create_saved_ddl", schema=schema))
    except psycopg.errors.UniqueViolation:
        pass


def disable_user_triggers(conn: psycopg.Connection, schemas: Sequence[str], *, control_schema: str) -> str:
    """Disable the enabled user triggers of ``schemas``; return the DDL that enables exactly them again.

    The enable and disable DDL are saved in ``<control_schema>.saved_ddl`` (keyed by purpose and
    database) in the same transaction that disables the triggers. A rerun finds them there, applies
    the saved disable DDL again (a no-op when nothing changed) and returns the saved enable DDL, so
    triggers it disabled itself are never mistaken for triggers that were off before.
    """
    names = validate_schemas(schemas)
    validate_identifier(control_schema, field="control_schema")
    if control_schema in names:
        raise ValueError(f"control_schema: {control_schema!r} is also a migrated schema; use a schema of its own")
    _ensure_saved_ddl_table(conn, control_schema)
    with conn.transaction(), conn.cursor(row_factory=dict_row) as cur:
        cur.execute(sqlfiles.compose("target_prep_lock_saved_ddl", schema=control_schema))
        saved = {r["purpose"]: r for r in cur.execute(sqlfiles.compose("target_prep_read_saved_ddl",
                                                                       schema=control_schema),
                                                        {"purposes": [PURPOSE_ENABLE, PURPOSE_DISABLE]})}
        if PURPOSE_ENABLE in saved and PURPOSE_DISABLE in saved:
            if sorted(saved[PURPOSE_ENABLE]["schemas"]) != sorted(names):
                raise TargetPrepError(
                    f"{control_schema}.saved_ddl already holds trigger DDL for schemas "
                    f"{saved[PURPOSE_ENABLE]['schemas']!r}, "
                    f"not {names!r}. Enable those triggers first (target_prep.enable_triggers) and delete the rows "
                    f"with purpose {PURPOSE_ENABLE!r}/{PURPOSE_DISABLE!r}, or rerun with the same schemas."
                )
            disable_ddl = saved[PURPOSE_DISABLE]["ddl"]
            count = _statements(disable_ddl, "DISABLE", field="saved disable DDL")
            if count:
                cur.execute(disable_ddl)
            log.info("Trigger DDL was saved before; %d trigger(s) kept disabled", count)
            return saved[PURPOSE_ENABLE]["ddl"]

        generated = cur.execute(sqlfiles.load("target_prep_trigger_ddl"), {"schemas": names}).fetchone()
        for purpose, ddl in ((PURPOSE_ENABLE, generated["enable_ddl"]), (PURPOSE_DISABLE, generated["disable_ddl"])):
            cur.execute(sqlfiles.compose("target_prep_save_ddl", schema=control_schema),
                        {"purpose": purpose, "schemas": names, "ddl": ddl})
        if generated["triggers"]:
            cur.execute(generated["disable_ddl"])
    log.info("Disabled %d user trigger(s); the enabling DDL is saved in %s.saved_ddl",
             generated["triggers"], control_schema)
    return generated["enable_ddl"]


def saved_trigger_ddl(conn: psycopg.Connection, control_schema: str) -> str | None:
    """The enabling DDL saved by ``disable_user_triggers`` for this database, or None."""
    validate_identifier(control_schema, field="control_schema")
    try:
        row = conn.execute(sqlfiles.compose("target_prep_read_saved_ddl", schema=control_schema),
                           {"purposes": [PURPOSE_ENABLE]}).fetchone()
    except (psycopg.errors.UndefinedTable, psycopg.errors.InvalidSchemaName):
        return None
    return row[2] if row else None


def enable_triggers(conn: psycopg.Connection, ddl: str) -> int:
    """Run the saved enabling DDL in one round trip (one implicit transaction); returns the statement count."""
    count = _statements(ddl, "ENABLE", field="ddl")
    if count:
        conn.execute(ddl)
    log.info("Enabled %d user trigger(s)", count)
    return count
