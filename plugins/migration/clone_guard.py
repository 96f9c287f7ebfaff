"""Proof that a connection meant for the target reaches the clone, not the source.

A physical clone (pg_basebackup, an Aurora clone, a restored RDS snapshot) carries the source's
system identifier, its roles, slots and triggers, so a target connection that points at the source
by mistake (a wrong port, a stale endpoint) would let target-side tasks drop the source's slots
and disable its triggers. Every task that changes the target calls ``ensure_target_is_not_source``
on the connection it is about to change, before changing anything.

The test is the postmaster's start time: the same running server answers both connections exactly
when ``pg_postmaster_start_time()`` is equal to the microsecond. A clone always runs its own
postmaster (locally on another port or data directory, on AWS on another host), and the value is
the same through any address, port, DNS name or connection pooler that reaches the same server.
"""

from __future__ import annotations

import logging
from typing import Any

import psycopg
from psycopg.rows import dict_row

from migration import sql as sqlfiles

log = logging.getLogger(__name__)


class TargetIsSourceError(RuntimeError):
    """The connection meant for the target reaches the source server itself; nothing was changed."""


def server_identity(conn: psycopg.Connection) -> dict[str, Any]:
    """``{started_at, address, port, database}`` of the server that answers on ``conn``."""
    with conn.cursor(row_factory=dict_row) as cur:
        return cur.execute(sqlfiles.load("clone_guard_server_identity")).fetchone()


def _where(identity: dict[str, Any]) -> str:
    address = identity["address"] or "a local socket"
    return f"{address} port {identity['port']}, database {identity['database']!r}"


def ensure_target_is_not_source(target_conn: psycopg.Connection, source_conn: psycopg.Connection, *,
                                task: str = "this task") -> dict[str, Any]:
    """Raise ``TargetIsSourceError`` when ``target_conn`` reaches the same server as ``source_conn``.

    Returns the target's identity (for logs) when the two are different servers.
    """
    if target_conn is None or source_conn is None:
        raise ValueError("source_conn / target_conn: both connections are needed to prove the target is the clone")
    source = server_identity(source_conn)
    target = server_identity(target_conn)
    if target["started_at"] == source["started_at"]:
        raise TargetIsSourceError(
            f"{task}: the target connection reaches the source server itself (server at {_where(target)}; "
            f"the source connection reaches {_where(source)}; both postmasters started at {source['started_at']}). "
            "Nothing was changed. Point the target connection (or the clone endpoint it is given) at the clone, "
            "then rerun."
        )
    log.info("%s: the target (%s, started %s) is not the source (started %s)", task, _where(target),
             target["started_at"], source["started_at"])
    return target
