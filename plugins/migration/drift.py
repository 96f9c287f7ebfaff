"""Schema drift: DDL run on one side after the clone point, found by comparing the migrated schemas' catalogs.

Logical replication carries rows, not DDL. An ``ADD COLUMN``, ``CREATE TABLE`` or ``ALTER TYPE`` on the
source after the clone either stops the subscription's apply worker (the target lacks the column or
table) or is silently not carried (a new index, default, constraint, enum label or sequence). Both
sides answer one catalog statement (``drift_catalog``): a digest over every object that matters for
the data, and per object its kind, name and definition. Equal digests mean no drift; otherwise the
objects are compared one by one so the message names each differing object and how it differs.

The check is read-only and takes no lock on user tables. The cutover runs it ahead of its fence
(``SourceSchemaWatch.ahead``), with a change marker of the source's catalog (``drift_fingerprint``);
inside the write-blocked window only the marker is read again (``recheck``), which costs a few catalog
scans instead of printing every definition, and the digests are compared only when it moved.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import psycopg

from migration import sql as sqlfiles
from migration.config import check_names

# How many differing objects a message names before it says "and N more".
SHOWN = 20


class SchemaDriftError(RuntimeError):
    """Source and target schemas differ; the message names the differing objects."""

    def __init__(self, message: str, differences: list[str]):
        super().__init__(message)
        self.differences = differences


def drift_schemas(schemas: Any) -> list[str]:
    """``schemas`` checked as names (a clear error naming the field), as a list."""
    return check_names(schemas if isinstance(schemas, str | list) or schemas is None else list(schemas),
                       "schema drift", "schemas")


def catalog(conn: psycopg.Connection, schemas: Sequence[str], *,
            detail: bool = True) -> tuple[str, dict[tuple[str, str], str]]:
    """(digest, {(kind, name): definition}) of the migrated schemas on one server; no objects with ``detail=False``.

    Runs in a transaction of its own (a savepoint inside the caller's) that is rolled back, with
    search_path pg_catalog so names print qualified alike on both servers: the session is left as it was.
    """
    with conn.transaction(force_rollback=True):
        conn.execute(sqlfiles.load("drift_search_path_set"), {"search_path": "pg_catalog, pg_temp"})
        rows = conn.execute(sqlfiles.load("drift_catalog"), {"schemas": list(schemas), "detail": detail}).fetchall()
    digest = rows[0][0]
    objects = {(kind, name): detail_text or "" for _, _, kind, name, detail_text in rows if kind is not None}
    return digest, objects


def fingerprint(conn: psycopg.Connection, schemas: Sequence[str]) -> str:
    """A change marker of the catalog rows behind the migrated schemas' definitions (``drift_fingerprint``).

    Equal markers read at two times mean no DDL touched those objects in between, so a digest read after
    the first marker still holds. A different marker means only "maybe": compare the digests.
    """
    with conn.transaction(force_rollback=True):
        return conn.execute(sqlfiles.load("drift_fingerprint"), {"schemas": list(schemas)}).fetchone()[0]


def describe(kind: str, name: str, source: str | None, target: str | None) -> str:
    """One difference in words: the object, and what each side has."""
    if target is None:
        return f"{kind} {name}: only on the source ({source})"
    if source is None:
        return f"{kind} {name}: only on the target ({target})"
    return f"{kind} {name}: the source has {source}; the target has {target}"


def schema_drift(source_conn: psycopg.Connection, target_conn: psycopg.Connection,
                 schemas: Sequence[str]) -> list[str]:
    """Every object of ``schemas`` whose definition differs between source and target; empty means none.

    Each item names the object (kind and qualified name) and how it differs, for example
    ``column "app"."orders"."note": only on the source (text null)``. Costs one digest query per side
    when nothing differs, and one more per side to name the differences when something does.
    """
    schemas = drift_schemas(schemas)
    source_digest, _ = catalog(source_conn, schemas, detail=False)
    target_digest, _ = catalog(target_conn, schemas, detail=False)
    if source_digest == target_digest:
        return []
    _, source = catalog(source_conn, schemas)
    _, target = catalog(target_conn, schemas)
    found = [describe(kind, name, source.get((kind, name)), target.get((kind, name)))
             for kind, name in sorted(source.keys() | target.keys())
             if source.get((kind, name)) != target.get((kind, name))]
    if not found:  # the catalog changed between the digest and the detail reads
        found = [f"the schemas' catalog digests differ (source {source_digest}, target {target_digest}) "
                 "but no single object was named; check again"]
    return found


def drift_message(differences: Sequence[str], *, database: str | None = None) -> str:
    """The error text for a list of differences (the first SHOWN of them, and how many more)."""
    where = f"database {database}: " if database else ""
    shown = "; ".join(differences[:SHOWN])
    more = f"; and {len(differences) - SHOWN} more" if len(differences) > SHOWN else ""
    return (f"{where}schema drift between source and target in {len(differences)} object(s): {shown}{more}. "
            "DDL run after the clone point is not carried by CDC: apply the same DDL on the target (or undo it "
            "on the source) until the schemas match, then check again")


def check_no_drift(source_conn: psycopg.Connection, target_conn: psycopg.Connection, schemas: Sequence[str], *,
                   database: str | None = None) -> None:
    """Raise SchemaDriftError naming every differing object; return None when source and target match."""
    found = schema_drift(source_conn, target_conn, schemas)
    if found:
        raise SchemaDriftError(drift_message(found, database=database), found)


def check_source_unchanged(source_conn: psycopg.Connection, target_conn: psycopg.Connection,
                           schemas: Sequence[str], target_digest: str, *, database: str | None = None) -> None:
    """The cheap re-check for the cutover's window: the source's digest alone against the target's, read
    before writes were blocked (nothing changes the target's schemas meanwhile). Only when they differ
    are both sides read in detail, to name the differences; SchemaDriftError then."""
    source_digest, _ = catalog(source_conn, drift_schemas(schemas), detail=False)
    if source_digest != target_digest:
        check_no_drift(source_conn, target_conn, schemas, database=database)


@dataclass
class SourceSchemaWatch:
    """Schema drift at the cutover, in two passes.

    ``ahead`` (before writes are blocked) reads the source's catalog marker, then compares both sides'
    digests: drift found then fails the cutover with the source untouched. ``recheck`` (inside the window,
    the source quiet) reads the marker again; the same marker proves the source's definitions are the
    ones compared ahead, and only a moved marker costs the source's digest against the target's read
    ahead (nothing changes the target's schemas meanwhile). Without ``ahead`` (or after a failed one)
    ``recheck`` compares both digests.
    """

    source_conn: psycopg.Connection
    target_conn: psycopg.Connection
    schemas: Sequence[str]
    database: str | None = None
    _marker: str | None = field(default=None, init=False, repr=False)
    _target_digest: str | None = field(default=None, init=False, repr=False)

    def __post_init__(self) -> None:
        self.schemas = drift_schemas(self.schemas)

    def ahead(self) -> dict[str, Any]:
        self._marker = self._target_digest = None
        marker = fingerprint(self.source_conn, self.schemas)  # first: the digests below are no older
        source_digest, _ = catalog(self.source_conn, self.schemas, detail=False)
        target_digest, _ = catalog(self.target_conn, self.schemas, detail=False)
        if source_digest != target_digest:
            check_no_drift(self.source_conn, self.target_conn, self.schemas, database=self.database)
        self._marker, self._target_digest = marker, target_digest
        return {"catalog_rows": int(marker.split(":", 1)[0])}

    def recheck(self) -> dict[str, Any]:
        if self._marker is not None and fingerprint(self.source_conn, self.schemas) == self._marker:
            return {"source_catalog": "unchanged since the check ahead of the fence"}
        if self._target_digest is None:
            check_no_drift(self.source_conn, self.target_conn, self.schemas, database=self.database)
        else:
            check_source_unchanged(self.source_conn, self.target_conn, self.schemas, self._target_digest,
                                   database=self.database)
        return {"source_catalog": "changed since the check ahead of the fence; the digests still match"}
