"""Replication slots and the CDC start LSN on real PostgreSQL 15 servers and real pg_basebackup clones.

Whether a start LSN is right is checked the way CDC itself would use it: a temporary copy of the
slot is advanced to the LSN (exactly what START_REPLICATION at that LSN does) and peeked; the rows
it yields must be exactly the rows the clone lacks. One clone is recovered up to a chosen commit
(recovery_target_xid, replaying the source's own WAL files), so that its "redo done at" is exactly
where that commit record starts. Nothing is stood in.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import threading
import time

import psycopg
import pytest

from migration.capture import METHOD_AURORA, METHOD_REDO_DONE_AT, LocalLogReader, capture_clone_lsn
from migration.localpg import _write_as_server_user
from migration.lsn import LSN, LSNError
from migration.slots import (
    SlotError,
    SlotPluginMismatchError,
    create_slot,
    drop_copied_slots,
    plugin_for,
    replication_lag_bytes,
    resolve_start_lsn,
)

pytestmark = pytest.mark.integration


def connect(server, **kwargs) -> psycopg.Connection:
    return psycopg.connect(server.conninfo(**kwargs), autocommit=True)


@pytest.fixture(scope="module")
def source(pg_servers):
    # Decoding reads only flushed WAL, so commits must flush before they return.
    return pg_servers.new("src", synchronous_commit="on")


@pytest.fixture
def conn(source):
    with connect(source) as c:
        yield c


def slot_names(conn) -> set[str]:
    return {r[0] for r in conn.execute("SELECT slot_name FROM pg_replication_slots")}


def slot_row(conn, name):
    return conn.execute(
        "SELECT plugin, confirmed_flush_lsn::text, restart_lsn::text FROM pg_replication_slots WHERE slot_name = %s",
        (name,),
    ).fetchone()


def peek_all(conn, slot) -> list[tuple[LSN, str, str]]:
    return [(LSN(lsn), xid, data) for lsn, xid, data in
            conn.execute("SELECT lsn::text, xid::text, data FROM pg_logical_slot_peek_changes(%s, NULL, NULL)",
                         (slot,))]


def cdc_rows_from(conn, slot, start) -> list[str]:
    """Rows a consumer starting the slot at ``start`` would receive (the slot itself is untouched)."""
    probe = f"{slot}_probe"
    conn.execute("SELECT pg_copy_logical_replication_slot(%s, %s, true)", (slot, probe))
    try:
        conn.execute("SELECT pg_replication_slot_advance(%s, %s::pg_lsn)", (probe, str(start)))
        return [r[0] for r in conn.execute("SELECT data FROM pg_logical_slot_peek_changes(%s, NULL, NULL)", (probe,))]
    finally:
        conn.execute("SELECT pg_drop_replication_slot(%s)", (probe,))


def inserted_ids(rows, table) -> list[int]:
    pattern = re.compile(rf"^table public\.{table}: INSERT: id\[integer\]:(\d+)")
    return [int(m.group(1)) for m in map(pattern.match, rows) if m]


def ids(conn, table) -> list[int]:
    return [r[0] for r in conn.execute(f"SELECT id FROM {table} ORDER BY id")]


def insert_each(conn, table, ids_):
    for i in ids_:
        conn.execute(f"INSERT INTO {table} VALUES (%s, 'x')", (i,))


# --- plugin_for / create_slot ---------------------------------------------------------------------


def test_plugin_for_engine():
    assert plugin_for("dms") == "test_decoding"
    assert plugin_for("native") == "pgoutput"
    with pytest.raises(ValueError, match="^engine: "):
        plugin_for("pglogical")


@pytest.mark.parametrize("plugin", ["test_decoding", "pgoutput"])
def test_create_slot_then_reuse_on_rerun(conn, plugin):
    name = f"create_{plugin}"
    first = create_slot(conn, name, plugin, wait_for_xacts_s=5)
    assert first["created"] is True
    assert (first["slot_name"], first["plugin"]) == (name, plugin)
    assert slot_row(conn, name)[0] == plugin
    consistent = LSN(first["lsn"])
    assert LSN(slot_row(conn, name)[1]) == consistent

    conn.execute("SELECT txid_current()")  # some WAL after creation
    again = create_slot(conn, name, plugin, wait_for_xacts_s=5)
    assert again == {"slot_name": name, "plugin": plugin, "lsn": str(consistent), "created": False}


def test_plugin_mismatch_names_slot_plugins_and_fix(conn):
    create_slot(conn, "mismatch", "test_decoding", wait_for_xacts_s=5)
    with pytest.raises(SlotPluginMismatchError) as err:
        create_slot(conn, "mismatch", "pgoutput", wait_for_xacts_s=5)
    message = str(err.value)
    for part in ("'mismatch'", "'test_decoding'", "'pgoutput'", "pg_drop_replication_slot('mismatch')"):
        assert part in message
    assert slot_row(conn, "mismatch")[0] == "test_decoding"


@pytest.mark.parametrize("bad", ["Upper", "with-dash", "", "x" * 64, "a;drop", None])
def test_bad_slot_name_creates_nothing(conn, bad):
    before = slot_names(conn)
    with pytest.raises(ValueError, match="^slot_name: "):
        create_slot(conn, bad, "test_decoding", wait_for_xacts_s=1)
    assert slot_names(conn) == before


def test_bad_plugin_and_wait_are_refused(conn):
    with pytest.raises(ValueError, match="^plugin: "):
        create_slot(conn, "badplugin", "wal2json", wait_for_xacts_s=1)
    with pytest.raises(ValueError, match="^wait_for_xacts_s: "):
        create_slot(conn, "badwait", "pgoutput", wait_for_xacts_s=-1)
    assert not {"badplugin", "badwait"} & slot_names(conn)


def test_create_slot_waits_for_older_transactions(source, caplog):
    caplog.set_level("INFO", logger="migration.slots")
    with connect(source) as watcher, psycopg.connect(source.conninfo()) as blocker:
        blocker.execute("SELECT txid_current()")  # an open transaction holding an xid
        result = {}

        def run():
            with connect(source) as c:
                result.update(create_slot(c, "waits", "test_decoding", wait_for_xacts_s=60))

        thread = threading.Thread(target=run)
        thread.start()
        deadline = time.monotonic() + 30
        while "creating slot waits" not in caplog.text:
            assert time.monotonic() < deadline, "create_slot never reported waiting"
            time.sleep(0.05)
        assert "waits" not in slot_names(watcher)
        blocker.commit()
        thread.join(timeout=60)
        assert result["created"] is True
        assert "waits" in slot_names(watcher)


def test_create_slot_gives_up_naming_the_transactions(source):
    with connect(source) as c, psycopg.connect(source.conninfo()) as blocker:
        pid = blocker.execute("SELECT pg_backend_pid()").fetchone()[0]
        blocker.execute("SELECT txid_current()")
        c.execute("BEGIN; SELECT txid_current(); PREPARE TRANSACTION 'held_for_slot'")
        try:
            with pytest.raises(SlotError) as err:
                create_slot(c, "never", "test_decoding", wait_for_xacts_s=0)
        finally:
            c.execute("ROLLBACK PREPARED 'held_for_slot'")
        message = str(err.value)
        assert f"pid {pid}" in message and "'held_for_slot'" in message
        assert "pg_terminate_backend" in message and "ROLLBACK PREPARED" in message
        assert "never" not in slot_names(c)


# --- lag ---------------------------------------------------------------------------------------------


def test_replication_lag_bytes(conn):
    create_slot(conn, "lag", "test_decoding", wait_for_xacts_s=5)
    conn.execute("CREATE TABLE lag_t (id int PRIMARY KEY, v text)")
    conn.execute("INSERT INTO lag_t SELECT g, repeat('x', 100) FROM generate_series(1, 1000) g")
    current, confirmed = conn.execute(
        "SELECT pg_current_wal_lsn()::text, confirmed_flush_lsn::text FROM pg_replication_slots WHERE slot_name = 'lag'"
    ).fetchone()
    lag = replication_lag_bytes(conn, "lag")
    assert lag >= LSN(current) - LSN(confirmed) > 100_000
    conn.execute("SELECT pg_replication_slot_advance('lag', pg_current_wal_lsn())")
    assert 0 <= replication_lag_bytes(conn, "lag") < lag
    with pytest.raises(SlotError, match="'nosuchslot' does not exist"):
        replication_lag_bytes(conn, "nosuchslot")


# --- drop_copied_slots ----------------------------------------------------------------------------


def test_drop_copied_slots_on_the_target(pg_servers, source, conn):
    from migration.clone_guard import TargetIsSourceError

    create_slot(conn, "carried", "test_decoding", wait_for_xacts_s=5)
    target = pg_servers.clone(source)
    with connect(target) as t:
        # pg_basebackup leaves pg_replslot out; an Aurora clone carries the slots, so recreate copies there.
        t.execute("SELECT pg_create_logical_replication_slot('carried', 'test_decoding')")
        t.execute("SELECT pg_create_physical_replication_slot('carried_physical', true)")
        t.execute("SELECT pg_create_logical_replication_slot('in_use', 'test_decoding')")
        recv = shutil.which("pg_recvlogical", path=str(target.bindir))
        consumer = subprocess.Popen([recv, "-d", target.conninfo(), "-S", "in_use", "--start", "-f", "/dev/null"],
                                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            deadline = time.monotonic() + 30
            while not t.execute("SELECT active FROM pg_replication_slots WHERE slot_name = 'in_use'").fetchone()[0]:
                assert time.monotonic() < deadline, "pg_recvlogical never attached to the slot"
                time.sleep(0.05)

            with pytest.raises(TargetIsSourceError, match="reaches the source server itself"):
                drop_copied_slots(conn, source_conn=conn)
            assert "carried" in slot_names(conn)

            assert sorted(drop_copied_slots(t, source_conn=conn)) == ["carried", "carried_physical"]
            assert slot_names(t) == {"in_use"}
            assert drop_copied_slots(t, source_conn=conn) == []
        finally:
            consumer.terminate()
            consumer.wait(timeout=30)
    assert "carried" in slot_names(conn)


# --- resolve_start_lsn ----------------------------------------------------------------------------


def test_runbook_key_case_start_lsn_is_the_first_change_the_clone_lacks(pg_servers, source, conn):
    conn.execute("CREATE TABLE key_t (id int PRIMARY KEY, v text)")
    conn.execute("CREATE PUBLICATION key_pub FOR TABLE key_t")  # before the slot: pgoutput reads it historically
    create_slot(conn, "key_td", "test_decoding", wait_for_xacts_s=5)
    create_slot(conn, "key_po", "pgoutput", wait_for_xacts_s=5)
    insert_each(conn, "key_t", range(1, 6))

    clone = pg_servers.clone(source)
    insert_each(conn, "key_t", range(6, 11))

    with connect(clone) as c:
        captured = capture_clone_lsn(c, log_reader=LocalLogReader(clone.logfile), slot_name=None)
        clone_ids = ids(c, "key_t")
    assert captured["method"] == METHOD_REDO_DONE_AT
    point = LSN(captured["lsn"])
    missing = sorted(set(ids(conn, "key_t")) - set(clone_ids))
    assert clone_ids == [1, 2, 3, 4, 5] and missing == [6, 7, 8, 9, 10]

    rows = peek_all(conn, "key_td")
    assert point not in {lsn for lsn, _, _ in rows}, "the captured LSN is not a change boundary in the slot"
    confirmed_before = slot_row(conn, "key_td")[1]

    result = resolve_start_lsn(conn, "key_td", point)
    start = LSN(result["start_lsn"])
    assert start == point + 1
    assert (result["captured_lsn"], result["capture_method"]) == (str(point), METHOD_REDO_DONE_AT)
    assert inserted_ids(cdc_rows_from(conn, "key_td", start), "key_t") == missing
    assert slot_row(conn, "key_td")[1] == confirmed_before, "resolving must only peek"

    pgoutput = resolve_start_lsn(conn, "key_po", point, publication="key_pub")
    assert pgoutput["start_lsn"] == result["start_lsn"]


def test_transaction_open_across_the_clone_point_is_not_skipped(pg_servers, source, conn):
    conn.execute("CREATE TABLE span_t (id int PRIMARY KEY, v text)")
    create_slot(conn, "span_td", "test_decoding", wait_for_xacts_s=5)
    insert_each(conn, "span_t", [1])
    with psycopg.connect(source.conninfo()) as open_tx:
        open_tx.execute("INSERT INTO span_t VALUES (1000, 'open while cloning')")
        clone = pg_servers.clone(source)
        open_tx.commit()

    with connect(clone) as c:
        point = LSN(capture_clone_lsn(c, log_reader=LocalLogReader(clone.logfile), slot_name=None)["lsn"])
        assert ids(c, "span_t") == [1]

    rows = peek_all(conn, "span_td")
    naive = min(lsn for lsn, _, _ in rows if lsn > point)
    assert [data for lsn, _, data in rows if lsn == naive][0].startswith("COMMIT")
    assert inserted_ids(cdc_rows_from(conn, "span_td", naive), "span_t") == [], "the plain rule would lose row 1000"

    result = resolve_start_lsn(conn, "span_td", point)
    assert result["start_lsn"] == str(point + 1)
    assert inserted_ids(cdc_rows_from(conn, "span_td", LSN(result["start_lsn"])), "span_t") == [1000]


def clone_until_commit_of(pg_servers, source, take_backup, make_changes):
    """A real clone of ``source`` whose recovery stops right after a chosen transaction's commit.

    ``take_backup`` runs before the base backup, ``make_changes(conn)`` after it and returns the xid
    to stop after. The clone replays the source's own WAL files (restore_command) up to that commit
    and is promoted, so its "redo done at" is the start of that commit record.
    """
    with connect(source) as c:
        take_backup(c)
    clone = pg_servers.clone(source, start=False)
    with connect(source) as c:
        xid = make_changes(c)
        c.execute("SELECT pg_switch_wal()")
    clone._write_settings({"restore_command": f"'cp {source.datadir}/pg_wal/%f %p'",
                           "recovery_target_xid": f"'{xid}'", "recovery_target_inclusive": "on",
                           "recovery_target_action": "'promote'"})
    _write_as_server_user(clone.datadir / "recovery.signal", "", append=False)
    return clone.start()


@pytest.mark.safety
def test_transaction_committed_exactly_at_the_clone_point_is_not_replayed(pg_servers, source, conn):
    """Scenario 14: a redo_done_at clone point that is the start of a commit record. The slot holds a row
    at exactly that LSN (the previous transaction's COMMIT ends there), which the old rule took as an exact
    start and so replayed the transaction the clone already holds."""
    create_slot(conn, "at_td", "test_decoding", wait_for_xacts_s=5)
    for attempt in range(3):  # a background WAL record between the two commits spoils the set-up; try again
        table = f"at_t{attempt}"

        def changes(c, table=table):
            with psycopg.connect(source.conninfo()) as held, psycopg.connect(source.conninfo(), autocommit=True) as s:
                held.execute(f"INSERT INTO {table} VALUES (1, 'held open, commits at the clone point')")
                xid = held.execute("SELECT txid_current()::text").fetchone()[0]
                s.execute(f"INSERT INTO {table} VALUES (2, 'commits just before')")
                held.commit()  # its commit record directly follows the previous one
            c.execute(f"INSERT INTO {table} VALUES (3, 'after the clone point')")
            return xid

        clone = clone_until_commit_of(pg_servers, source, lambda c,
                                      t=table: c.execute(f"CREATE TABLE {t} (id int, v text)"),
                                      changes)
        with connect(clone) as c:
            point = LSN(capture_clone_lsn(c, log_reader=LocalLogReader(clone.logfile), slot_name=None)["lsn"])
            assert ids(c, table) == [1, 2], "the clone holds the transaction that commits at its clone point"
        if point in {lsn for lsn, _, data in peek_all(conn, "at_td") if data.startswith("COMMIT")}:
            break
    else:
        pytest.fail("no clone point came right after another commit in three attempts")

    result = resolve_start_lsn(conn, "at_td", point, capture_method=METHOD_REDO_DONE_AT)
    assert inserted_ids(cdc_rows_from(conn, "at_td", LSN(result["start_lsn"])), table) == [3]
    assert result["start_lsn"] == str(point + 1)
    # The captured LSN itself would replay row 1, which the clone already has.
    assert inserted_ids(cdc_rows_from(conn, "at_td", point), table) == [1, 3]


@pytest.mark.safety
def test_start_position_follows_the_capture_method():
    """Scenario 14: redo done at X -> X + 1 (the native path's rule); a first-missing position as given."""
    from migration.slots import start_position_for

    assert start_position_for("0/16B3748", METHOD_REDO_DONE_AT) == LSN("0/16B3749")
    assert start_position_for("0/16B3748", METHOD_AURORA) == LSN("0/16B3748")
    assert start_position_for("0/16B3748", "slot_consistent_point") == LSN("0/16B3748")
    with pytest.raises(ValueError, match="^capture_method: "):
        start_position_for("0/16B3748", "guess")


def test_capture_that_names_the_first_missing_position_keeps_the_open_transaction(conn):
    conn.execute("CREATE TABLE span2_t (id int PRIMARY KEY, v text)")
    create_slot(conn, "span2_td", "test_decoding", wait_for_xacts_s=5)
    conn.execute("INSERT INTO span2_t VALUES (1, 'x')")
    with conn.transaction():
        conn.execute("INSERT INTO span2_t VALUES (2, 'x')")
        point = LSN(conn.execute("SELECT pg_current_wal_insert_lsn()::text").fetchone()[0])
    result = resolve_start_lsn(conn, "span2_td", point, capture_method=METHOD_AURORA)
    assert result["start_lsn"] == str(point)
    assert inserted_ids(cdc_rows_from(conn, "span2_td", point), "span2_t") == [2]


def test_clone_point_on_a_change_keeps_that_uncommitted_transaction(conn):
    conn.execute("CREATE TABLE exact_t (id int PRIMARY KEY, v text)")
    create_slot(conn, "exact_td", "test_decoding", wait_for_xacts_s=5)
    insert_each(conn, "exact_t", [1, 2, 3])
    # The clone replayed the insert of row 2, but not its commit: row 2 is missing from it.
    second_insert = [lsn for lsn, _, data in peek_all(conn, "exact_td") if "id[integer]:2" in data][0]
    result = resolve_start_lsn(conn, "exact_td", second_insert)
    assert result["start_lsn"] == str(second_insert + 1)
    assert inserted_ids(cdc_rows_from(conn, "exact_td", LSN(result["start_lsn"])), "exact_t") == [2, 3]


def test_no_change_after_the_captured_lsn_yet(conn):
    create_slot(conn, "quiet_td", "test_decoding", wait_for_xacts_s=5)
    point = LSN(conn.execute("SELECT pg_current_wal_flush_lsn()::text").fetchone()[0])
    result = resolve_start_lsn(conn, "quiet_td", point)
    assert result["start_lsn"] == str(point + 1)
    assert "redo done at" in result["reason"]
    aurora = resolve_start_lsn(conn, "quiet_td", point, capture_method=METHOD_AURORA)
    assert aurora["start_lsn"] == str(point) and "first position the clone lacks" in aurora["reason"]


def test_cost_follows_the_distance_not_the_backlog(conn):
    conn.execute("CREATE TABLE cost_t (id int, v text)")
    create_slot(conn, "cost_td", "test_decoding", wait_for_xacts_s=5)
    insert_each(conn, "cost_t", [1, 2, 3])
    near = LSN(conn.execute("SELECT pg_current_wal_flush_lsn()::text").fetchone()[0])
    # A backlog of 5000 one-row transactions (15000 decoded rows) after the captured LSN.
    conn.execute("DO $$ BEGIN FOR i IN 4..5003 LOOP INSERT INTO cost_t VALUES (i, repeat('x', 500)); COMMIT; "
                 "END LOOP; END $$")
    far = LSN(conn.execute("SELECT pg_current_wal_flush_lsn()::text").fetchone()[0])
    insert_each(conn, "cost_t", [5004])

    near_result = resolve_start_lsn(conn, "cost_td", near)
    far_result = resolve_start_lsn(conn, "cost_td", far)
    assert inserted_ids(cdc_rows_from(conn, "cost_td", LSN(near_result["start_lsn"])), "cost_t")[0] == 4
    assert inserted_ids(cdc_rows_from(conn, "cost_td", LSN(far_result["start_lsn"])), "cost_t") == [5004]
    assert near_result["decoded_changes"] < 1_000
    assert far_result["decoded_changes"] >= 15_000
    assert far_result["decoded_changes"] > 20 * near_result["decoded_changes"]


def test_resolve_refuses_what_it_cannot_answer(conn):
    create_slot(conn, "late_td", "test_decoding", wait_for_xacts_s=5)
    confirmed = LSN(slot_row(conn, "late_td")[1])
    with pytest.raises(SlotError, match="after CDC's start"):
        resolve_start_lsn(conn, "late_td", confirmed - 2)
    with pytest.raises(SlotError, match="ahead of this server's WAL"):
        resolve_start_lsn(conn, "late_td", "FF/0")
    with pytest.raises(SlotError, match="'missing_td' does not exist"):
        resolve_start_lsn(conn, "missing_td", confirmed)
    with pytest.raises(LSNError, match="^captured: "):
        resolve_start_lsn(conn, "late_td", "not-an-lsn")
    with pytest.raises(ValueError, match="^capture_method: "):
        resolve_start_lsn(conn, "late_td", confirmed, capture_method="guess")
    create_slot(conn, "nopub_po", "pgoutput", wait_for_xacts_s=5)
    with pytest.raises(ValueError, match="^publication: "):
        resolve_start_lsn(conn, "nopub_po", confirmed)
    conn.execute("CREATE TABLE late_pub_t (id int PRIMARY KEY)")
    conn.execute("INSERT INTO late_pub_t VALUES (1)")
    conn.execute("CREATE PUBLICATION late_pub FOR TABLE late_pub_t")
    with pytest.raises(SlotError, match="must exist before the slot is created"):
        resolve_start_lsn(conn, "nopub_po", LSN(slot_row(conn, "nopub_po")[1]), publication="late_pub")


def test_resolve_on_a_slot_in_use_says_so(source, conn):
    create_slot(conn, "busy_td", "test_decoding", wait_for_xacts_s=5)
    confirmed = slot_row(conn, "busy_td")[1]
    recv = shutil.which("pg_recvlogical", path=str(source.bindir))
    consumer = subprocess.Popen([recv, "-d", source.conninfo(), "-S", "busy_td", "--start", "-f", "/dev/null"],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 30
        while not conn.execute("SELECT active FROM pg_replication_slots WHERE slot_name = 'busy_td'").fetchone()[0]:
            assert time.monotonic() < deadline
            time.sleep(0.05)
        with pytest.raises(SlotError, match="is in use"):
            resolve_start_lsn(conn, "busy_td", confirmed)
    finally:
        consumer.terminate()
        consumer.wait(timeout=30)


# --- operators ------------------------------------------------------------------------------------


def test_slot_operators_with_airflow_connections(monkeypatch, pg_servers, source, conn):
    from operators.clone_lsn import CaptureCloneLsnOperator, ResolveCdcStartLsnOperator
    from operators.replication_slot import CreateReplicationSlotOperator, DropCopiedSlotsOperator

    monkeypatch.setenv("AIRFLOW_CONN_MIG_SOURCE", f"postgresql://postgres@127.0.0.1:{source.port}/postgres")
    conn.execute("CREATE TABLE op_t (id int PRIMARY KEY, v text)")
    create = CreateReplicationSlotOperator(task_id="create_slot", source_conn_id="mig_source", database="postgres",
                                           slot_name="op_td", engine="dms", wait_for_xacts_s=5)
    made = create.execute({})
    assert made["created"] is True and made["plugin"] == "test_decoding"
    assert create.execute({})["created"] is False

    insert_each(conn, "op_t", [1])
    clone = pg_servers.clone(source)
    insert_each(conn, "op_t", [2])
    # The clone's endpoint is only known at run time: it reaches the operator through the port override.
    monkeypatch.setenv("AIRFLOW_CONN_MIG_TARGET", "postgresql://postgres@127.0.0.1:1/postgres")
    capture = CaptureCloneLsnOperator(task_id="capture_clone_lsn", target_conn_id="mig_target", database="postgres",
                                      target_port=str(clone.port), log_path=str(clone.logfile))
    captured = capture.execute({})
    assert captured["method"] == METHOD_REDO_DONE_AT

    resolve = ResolveCdcStartLsnOperator(task_id="resolve_cdc_start_lsn", source_conn_id="mig_source",
                                         database="postgres", slot_name="op_td", captured_lsn=captured["lsn"],
                                         capture_method=captured["method"])
    start = resolve.execute({})
    assert inserted_ids(cdc_rows_from(conn, "op_td", LSN(start["start_lsn"])), "op_t") == [2]

    with connect(clone) as t:
        t.execute("SELECT pg_create_logical_replication_slot('op_td', 'test_decoding')")
    drop = DropCopiedSlotsOperator(task_id="drop_copied_slots", target_conn_id="mig_target", database="postgres",
                                   target_port=clone.port, source_conn_id="mig_source")
    assert drop.execute({}) == ["op_td"]
    assert "op_td" in slot_names(conn)
