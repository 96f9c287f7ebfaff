"""Sequence sync between two real PostgreSQL 15 servers.

Round trips are counted from libpq's own protocol trace (one ReadyForQuery per round trip).
"""

from __future__ import annotations

import os
import tempfile
from contextlib import contextmanager

import psycopg
import pytest
from psycopg import pq

from migration.sequences import SequenceState, SequenceSyncError, read_sequences, sync_sequences

pytestmark = pytest.mark.integration

SCHEMA = """
CREATE SCHEMA shop;
CREATE SEQUENCE shop.standalone;
CREATE TABLE shop.orders (id serial PRIMARY KEY, note text);
CREATE TABLE shop.items (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, note text);
CREATE SEQUENCE shop.countdown INCREMENT BY -3 START WITH -10 MINVALUE -1000 MAXVALUE -1;
CREATE SEQUENCE shop.unused START WITH 42;
CREATE SEQUENCE shop.unused_down INCREMENT BY -1;
CREATE SEQUENCE shop.big AS bigint START WITH 9000000000000000000;
CREATE SEQUENCE shop.small AS smallint;
CREATE SCHEMA many;
DO $$ BEGIN FOR i IN 1..300 LOOP EXECUTE format('CREATE SEQUENCE many.s%s', i); END LOOP; END $$;
"""

SOURCE_USE = """
SELECT nextval('shop.standalone') FROM generate_series(1, 5);
INSERT INTO shop.orders (note) SELECT 'o' FROM generate_series(1, 7);
INSERT INTO shop.items (note) SELECT 'i' FROM generate_series(1, 3);
SELECT nextval('shop.countdown') FROM generate_series(1, 4);
SELECT nextval('shop.big') FROM generate_series(1, 2);
SELECT setval('shop.small', 32000);
DO $$ BEGIN FOR i IN 1..300 LOOP PERFORM setval(format('many.s%s', i)::regclass, i * 10); END LOOP; END $$;
"""


@pytest.fixture(scope="module")
def servers(pg_servers):
    source, target = pg_servers.new("src"), pg_servers.new("tgt")
    for server in (source, target):
        with psycopg.connect(server.conninfo(), autocommit=True) as conn:
            conn.execute(SCHEMA)
    with psycopg.connect(source.conninfo(), autocommit=True) as conn:
        conn.execute(SOURCE_USE)
    with psycopg.connect(target.conninfo(), autocommit=True) as conn:
        # The target moved on its own (e.g. a test write): sync must set it back to the source's state.
        conn.execute("SELECT nextval('shop.unused'), nextval('shop.unused_down'), setval('shop.standalone', 500)")
    return source, target


@pytest.fixture
def source(servers):
    with psycopg.connect(servers[0].conninfo(), autocommit=True) as conn:
        yield conn


@pytest.fixture
def target(servers):
    with psycopg.connect(servers[1].conninfo(), autocommit=True) as conn:
        yield conn


def state(conn, qualified):
    return conn.execute(f"SELECT last_value, is_called FROM {qualified}").fetchone()


@contextmanager
def round_trips(conn):
    """Counts the client/server round trips made inside the block, from libpq's protocol trace."""
    fd, path = tempfile.mkstemp()
    counted = {}
    conn.pgconn.trace(fd)
    conn.pgconn.set_trace_flags(pq.Trace.SUPPRESS_TIMESTAMPS)
    try:
        yield counted
    finally:
        conn.pgconn.untrace()
        os.close(fd)
        with open(path) as trace:
            counted["n"] = sum(1 for line in trace if line.startswith("B\t") and "\tReadyForQuery\t" in line)
        os.unlink(path)


def test_read_sequences_sees_every_kind(source):
    seqs = {s.name: s for s in read_sequences(source, ["shop"])}
    assert set(seqs) == {"standalone", "orders_id_seq", "items_id_seq", "countdown", "unused", "unused_down",
                         "big", "small"}
    assert (seqs["standalone"].last_value, seqs["standalone"].is_called) == (5, True)
    assert seqs["orders_id_seq"].last_value == 7
    assert seqs["items_id_seq"].last_value == 3
    assert (seqs["countdown"].last_value, seqs["countdown"].increment_by) == (-19, -3)
    assert (seqs["unused"].last_value, seqs["unused"].is_called, seqs["unused"].setval_args) == (None, False,
                                                                                                 (42, False))
    assert seqs["unused_down"].setval_args == (-1, False)
    assert seqs["big"].last_value == 9000000000000000001
    assert (seqs["small"].last_value, seqs["small"].data_type) == (32000, "smallint")


def test_sync_makes_the_target_continue_where_the_source_is(source, target):
    seqs = read_sequences(source, ["shop", "many"])
    assert len(seqs) == 308
    with round_trips(target) as trips:
        assert sync_sequences(target, seqs) == 308
    assert trips["n"] == 1
    for seq in seqs:
        name = f"{seq.schema}.{seq.name}"
        assert state(target, name) == state(source, name), name
    nexts = target.execute(
        "SELECT nextval('shop.standalone'), nextval('shop.countdown'), nextval('shop.unused'), "
        "nextval('shop.unused_down'), nextval('shop.big'), nextval('many.s300')"
    ).fetchone()
    assert nexts == (6, -22, 42, -1, 9000000000000000002, 3001)
    target.execute("INSERT INTO shop.orders (note) VALUES ('first on target')")
    target.execute("INSERT INTO shop.items (note) VALUES ('first on target')")
    assert target.execute("SELECT max(id) FROM shop.orders").fetchone()[0] == 8
    assert target.execute("SELECT max(id) FROM shop.items").fetchone()[0] == 4


def test_missing_on_target_changes_nothing(source, target):
    source.execute("CREATE SEQUENCE IF NOT EXISTS shop.source_only")
    try:
        seqs = read_sequences(source, ["shop"])
    finally:
        source.execute("DROP SEQUENCE shop.source_only")
    target.execute("SELECT setval('shop.standalone', 777)")
    with pytest.raises(SequenceSyncError, match=r"1 sequence\(s\) do not exist on the target: shop\.source_only"):
        sync_sequences(target, seqs)
    assert state(target, "shop.standalone") == (777, True)


def test_unreadable_sequences_are_reported(servers):
    with psycopg.connect(servers[0].conninfo(), autocommit=True) as admin:
        admin.execute("CREATE ROLE seq_reader LOGIN")
    with psycopg.connect(servers[0].conninfo(user="seq_reader"), autocommit=True) as conn:
        with pytest.raises(SequenceSyncError, match=r"cannot read 308 sequence\(s\): 'many.s1'"):
            read_sequences(conn, ["shop", "many"])


def test_bad_input(source, target):
    with pytest.raises(ValueError, match="^schemas: "):
        read_sequences(source, "shop")
    with pytest.raises(ValueError, match=r"^seqs\[0\]: "):
        sync_sequences(target, [("shop", "standalone", 1, True)])
    assert sync_sequences(target, []) == 0
    ok = SequenceState("shop", "standalone", 1, True, 1, 1, 1, 10, False, "bigint")
    assert sync_sequences(target, [ok]) == 1
    assert state(target, "shop.standalone") == (1, True)
