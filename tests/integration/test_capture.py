"""Capturing the clone's LSN on a real pg_basebackup clone of a real PostgreSQL 15 server.

Stand-in, named as required: PostgreSQL has no ``aurora_volume_logical_start_lsn()``, so one test
creates a SQL function of that name on the clone returning a fixed pg_lsn. It stands in for the
Aurora built-in only to show that the capture looks the function up in pg_proc and calls it; the
project's own code and PostgreSQL are not mocked.
"""

from __future__ import annotations

import psycopg
import pytest

from migration.capture import (
    METHOD_AURORA,
    METHOD_REDO_DONE_AT,
    METHOD_SLOT,
    CaptureError,
    LocalLogReader,
    capture_clone_lsn,
)
from migration.lsn import LSN, LSNError, find_redo_done
from migration.slots import create_slot

pytestmark = pytest.mark.integration


def connect(server) -> psycopg.Connection:
    return psycopg.connect(server.conninfo(), autocommit=True)


@pytest.fixture(scope="module")
def pair(pg_servers):
    # Decoding reads only flushed WAL; flushing at commit keeps slot creation quick.
    source = pg_servers.new("src", synchronous_commit="on")
    with connect(source) as conn:
        conn.execute("CREATE TABLE t (id int PRIMARY KEY)")
        slot = create_slot(conn, "capture_td", "test_decoding", wait_for_xacts_s=5)
        conn.execute("INSERT INTO t SELECT generate_series(1, 100)")
    clone = pg_servers.clone(source)
    with connect(source) as conn:
        conn.execute("INSERT INTO t SELECT generate_series(101, 200)")
    return source, clone, slot


@pytest.fixture
def source_conn(pair):
    with connect(pair[0]) as conn:
        yield conn


@pytest.fixture
def clone_conn(pair):
    with connect(pair[1]) as conn:
        yield conn


def test_redo_done_at_from_the_clone_log(pair, source_conn, clone_conn):
    _, clone, slot = pair
    result = capture_clone_lsn(clone_conn, log_reader=LocalLogReader(clone.logfile), slot_name=None)
    assert result["method"] == METHOD_REDO_DONE_AT
    captured = LSN(result["lsn"])
    assert captured == find_redo_done(clone.log_text())
    # The clone point lies after the slot's consistent point and before the source's writes since.
    current = LSN(source_conn.execute("SELECT pg_current_wal_lsn()::text").fetchone()[0])
    assert LSN(slot["lsn"]) < captured < current
    assert clone_conn.execute("SELECT count(*) FROM t").fetchone()[0] == 100


def test_aurora_function_wins_when_it_exists(pair, clone_conn):
    _, clone, _ = pair
    clone_conn.execute("CREATE FUNCTION public.aurora_volume_logical_start_lsn() RETURNS pg_lsn "
                       "LANGUAGE sql AS $$ SELECT '0/402E2F0'::pg_lsn $$")
    try:
        result = capture_clone_lsn(clone_conn, log_reader=LocalLogReader(clone.logfile), slot_name=None)
        assert result == {"lsn": "0/402E2F0", "method": METHOD_AURORA}
        # A pg_dump load names its method, so an Aurora target's function does not take over.
        pinned = capture_clone_lsn(clone_conn, log_reader=None, slot_name=None, method=METHOD_SLOT,
                                   consistent_point="0/1234")
        assert pinned == {"lsn": "0/1234", "method": METHOD_SLOT}
    finally:
        clone_conn.execute("DROP FUNCTION public.aurora_volume_logical_start_lsn()")


def test_slot_consistent_point(pair, source_conn, clone_conn):
    _, _, slot = pair
    given = capture_clone_lsn(clone_conn, log_reader=None, slot_name=None, consistent_point=slot["lsn"])
    assert given == {"lsn": slot["lsn"], "method": METHOD_SLOT}
    read = capture_clone_lsn(clone_conn, log_reader=None, slot_name="capture_td", source_conn=source_conn)
    assert read == {"lsn": slot["lsn"], "method": METHOD_SLOT}
    with pytest.raises(CaptureError, match="^slot_name: replication slot 'nope' does not exist"):
        capture_clone_lsn(clone_conn, log_reader=None, slot_name="nope", source_conn=source_conn)
    with pytest.raises(LSNError, match="^consistent_point: "):
        capture_clone_lsn(clone_conn, log_reader=None, slot_name=None, consistent_point="garbage")


def test_clear_error_when_nothing_applies(pair, clone_conn):
    with pytest.raises(CaptureError) as err:
        capture_clone_lsn(clone_conn, log_reader=lambda: "LOG:  database system is ready\n", slot_name=None)
    message = str(err.value)
    assert "aurora_volume_logical_start_lsn() does not exist on the clone" in message
    assert "has no 'redo done at' line" in message
    assert "no consistent point" in message
    with pytest.raises(CaptureError, match="no log reader was given"):
        capture_clone_lsn(clone_conn, log_reader=None, slot_name=None, method=METHOD_REDO_DONE_AT)


def test_log_reader_shapes_and_bad_input(tmp_path):
    with pytest.raises(CaptureError, match="^log_path: cannot read"):
        capture_clone_lsn(None, log_reader=LocalLogReader(tmp_path / "missing.log"), slot_name=None,
                          method=METHOD_REDO_DONE_AT)
    # A later crash recovery of the clone prints another line; the first one is the clone point.
    text = "LOG:  redo done at 0/3000100 system usage\nLOG:  redo done at 0/5000200 system usage\n"
    assert capture_clone_lsn(None, log_reader=lambda: text, slot_name=None,
                             method=METHOD_REDO_DONE_AT)["lsn"] == "0/3000100"
    with pytest.raises(ValueError, match="^method: "):
        capture_clone_lsn(None, log_reader=None, slot_name=None, method="guess")
    with pytest.raises(ValueError, match="^log_reader: "):
        capture_clone_lsn(None, log_reader="/var/log/postgresql.log", slot_name=None, method=METHOD_REDO_DONE_AT)
