"""Issue 8, scenario 15: a slot kept after an aborted cutover must not fill the source's disk unnoticed.
The gate reads what each slot retains and the server's limit, and says it before anyone approves.
Real PostgreSQL 15; nothing is stood in."""

from __future__ import annotations

from datetime import UTC, datetime

import psycopg
import pytest

from migration import guardrails
from migration.slots import slot_retention

pytestmark = [pytest.mark.integration, pytest.mark.safety]


def test_the_gate_says_what_a_kept_slot_retains_and_what_limits_it(pg_servers):
    server = pg_servers.new("retain")
    with psycopg.connect(server.conninfo(), autocommit=True) as conn:
        conn.execute("SELECT pg_create_logical_replication_slot('kept', 'test_decoding')")
        conn.execute("CREATE TABLE filler AS SELECT g, repeat('x', 500) AS pad FROM generate_series(1, 20000) AS g")
        unlimited = slot_retention(conn, "kept")
        assert unlimited["retained_bytes"] > 5 * 1048576 and unlimited["max_slot_wal_keep_size"] == "-1"
        warning = guardrails.slot_warnings({"app": unlimited})[0]
        assert "no limit" in warning and "free storage" in warning

        conn.execute("ALTER SYSTEM SET max_slot_wal_keep_size = '64MB'")
        conn.execute("SELECT pg_reload_conf()")
    with psycopg.connect(server.conninfo(), autocommit=True) as conn:  # a session that has read the new limit
        limited = slot_retention(conn, "kept")
        assert limited["max_slot_wal_keep_size"] == "64MB" and limited["safe_wal_size"] > 0
        assert "invalidates it" in guardrails.slot_warnings({"app": limited})[0]

        body = guardrails.summary(guardrails.Guardrails(1 << 30), lag_bytes={"app": 0},
                                  validation={"app": {"tables": 1}}, steps=["cut over"], now=datetime.now(UTC),
                                  retention={"app": limited})
        assert "### Slots kept on the source" in body and "64MB" in body
        # A slot whose WAL is gone cannot resume CDC: that refuses the cutover.
        lost = {**limited, "wal_status": "lost"}
        assert any("lost WAL" in p for p in guardrails.problems(
            guardrails.Guardrails(1 << 30), lag_bytes={"app": 0}, validation={"app": {}}, now=datetime.now(UTC),
            retention={"app": lost}))
        conn.execute("SELECT pg_drop_replication_slot('kept')")
