"""Native CDC on real PostgreSQL: the boundary rule, publications, subscriptions and lag.

The boundary tests find the exact start of commit records with pg_walinspect, so the rule
"a commit starting at the captured LSN is already in the clone, every later commit is applied" is
checked at byte precision, both on the decoded stream and through a real subscription.
"""

from __future__ import annotations

import subprocess
import threading
import time

import psycopg
import pytest

from migration.local_clone import clone_local
from migration.localpg import LocalServer, free_port
from migration.lsn import LSN, find_redo_done
from migration.native_cdc import (
    NativeCdcError,
    advance_origin,
    create_publication,
    create_subscription,
    drop_publication,
    drop_subscription,
    measure_lag,
    origin_position_for,
    read_lag_samples,
    subscription_state,
)
from triggers.checks import poll_native_cdc_lag

pytestmark = pytest.mark.integration


def connect(server: LocalServer, dbname: str = "postgres") -> psycopg.Connection:
    return psycopg.connect(server.conninfo(dbname), autocommit=True)


def wait_for(predicate, timeout: float, what: str, interval: float = 0.1):
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(interval)


def commit_starts(conn: psycopg.Connection, start: str, end: str) -> dict[int, LSN]:
    """xid -> start LSN of its COMMIT record, read from the WAL itself."""
    rows = conn.execute(
        "SELECT xid::text::bigint, start_lsn::text FROM pg_get_wal_records_info(%s::pg_lsn, %s::pg_lsn) "
        "WHERE resource_manager = 'Transaction' AND record_type = 'COMMIT'", (start, end)).fetchall()
    return {xid: LSN(lsn) for xid, lsn in rows}


def one_row_transactions(conn: psycopg.Connection, table: str, ids: list[int]) -> tuple[dict[int, int], str, str]:
    """Insert each id in its own transaction; return id -> xid and the WAL range they were written in."""
    conn.execute("SET synchronous_commit = on")  # pg_walinspect reads only flushed WAL
    start = conn.execute("SELECT pg_current_wal_insert_lsn()::text").fetchone()[0]
    xids = {}
    for i in ids:
        with conn.transaction():
            conn.execute(f"INSERT INTO {table} (id) VALUES (%s)", (i,))
            xids[i] = int(conn.execute("SELECT pg_current_xact_id()::text").fetchone()[0])
    end = conn.execute("SELECT pg_current_wal_lsn()::text").fetchone()[0]
    return xids, start, end


def test_origin_position_is_one_byte_after_the_captured_lsn():
    assert origin_position_for(LSN("15/600002A8")) == LSN("15/600002A9")
    assert str(origin_position_for("0/FFFFFFFF")) == "1/0"
    with pytest.raises(ValueError, match="captured_lsn"):
        origin_position_for("not-an-lsn")


def test_boundary_on_the_decoded_stream(pg_servers):
    """A commit starting exactly at X is skipped from origin_position_for(X); the next one is not."""
    source = pg_servers.new("boundary")
    with connect(source) as conn:
        conn.execute("CREATE EXTENSION pg_walinspect")
        conn.execute("CREATE TABLE t (id int PRIMARY KEY)")
        for slot in ("at_origin", "at_captured", "streamed"):
            conn.execute("SELECT pg_create_logical_replication_slot(%s, 'test_decoding')", (slot,))
        xids, start, end = one_row_transactions(conn, "t", [1, 2, 3])
        starts = commit_starts(conn, start, end)
        captured = starts[xids[2]]  # the clone's "redo done at" lands exactly on commit 2
        origin = origin_position_for(captured)

        conn.execute("SELECT pg_replication_slot_advance('at_origin', %s::pg_lsn)", (str(origin),))
        decoded = [r[0] for r in conn.execute(
            "SELECT data FROM pg_logical_slot_peek_changes('at_origin', NULL, NULL) WHERE data LIKE 'table%%'")]
        assert decoded == ["table public.t: INSERT: id[integer]:3"]

        # Control: starting at X itself decodes commit 2 again, which the clone already holds.
        conn.execute("SELECT pg_replication_slot_advance('at_captured', %s::pg_lsn)", (str(captured),))
        decoded = [r[0] for r in conn.execute(
            "SELECT data FROM pg_logical_slot_peek_changes('at_captured', NULL, NULL) WHERE data LIKE 'table%%'")]
        assert decoded == ["table public.t: INSERT: id[integer]:2", "table public.t: INSERT: id[integer]:3"]

    # The streaming protocol, which a subscription uses, honours the same start point.
    out = subprocess.run(
        [str(pg_servers.bindir / "pg_recvlogical"), "-d", source.conninfo(), "--slot", "streamed", "--start",
         "--startpos", str(origin), "--endpos", end, "--no-loop", "-f", "-"],
        capture_output=True, text=True, timeout=60, check=True).stdout
    assert [line for line in out.splitlines() if line.startswith("table")] == ["table public.t: INSERT: id[integer]:3"]


def test_subscription_applies_exactly_the_commits_after_the_captured_lsn(pg_servers):
    """Through a real subscription: the commit at X is not applied again, every later one is."""
    source = pg_servers.new("bsrc")
    good = pg_servers.new("btgt")
    bad = pg_servers.new("bctl")
    ddl = "CREATE TABLE t (id int PRIMARY KEY, note text)"
    with connect(source) as src:
        src.execute("CREATE EXTENSION pg_walinspect")
        src.execute(ddl)
        create_publication(src, "pub", ["public"])
        for slot in ("slot_good", "slot_bad"):
            src.execute("SELECT pg_create_logical_replication_slot(%s, 'pgoutput')", (slot,))
        xids, start, end = one_row_transactions(src, "t", [1, 2, 3])
        src.execute("UPDATE t SET note = 'after' WHERE id = 2")
        captured = commit_starts(src, start, end)[xids[2]]
    # Both targets hold exactly what a clone that replayed through commit 2 holds.
    for target in (good, bad):
        with connect(target) as tgt:
            tgt.execute(ddl)
            tgt.execute("INSERT INTO t (id) VALUES (1), (2)")

    with connect(good) as tgt:
        create_subscription(tgt, "sub", source.conninfo(), "pub", "slot_good")
        assert advance_origin(tgt, "sub", captured) == captured + 1
        wait_for(lambda: tgt.execute("SELECT note FROM t WHERE id = 2").fetchone()[0] == "after", 30,
                 "the update after the boundary to be applied")
        assert tgt.execute("SELECT id, note FROM t ORDER BY id").fetchall() == [(1, None), (2, "after"), (3, None)]
        assert tgt.execute("SELECT apply_error_count FROM pg_stat_subscription_stats").fetchone()[0] == 0

    # Control: an origin at X itself re-applies commit 2 and apply stops on the duplicate key.
    with connect(bad) as tgt:
        create_subscription(tgt, "sub", source.conninfo(), "pub", "slot_bad")
        # origin_lsn is taken as it is: right for a start point, wrong for a "redo done at" position.
        assert advance_origin(tgt, "sub", origin_lsn=captured) == captured
        wait_for(lambda: tgt.execute("SELECT apply_error_count FROM pg_stat_subscription_stats").fetchone()[0] > 0,
                 30, "the control subscription to fail on the duplicate key")
        assert tgt.execute("SELECT count(*) FROM t WHERE id = 3").fetchone()[0] == 0
        drop_subscription(tgt, "sub")


SCHEMA = "App Schema"
TABLE = '"App Schema"."Order Items"'


class Writer(threading.Thread):
    """Inserts, updates and deletes rows on the source, one short transaction each, until stopped."""

    def __init__(self, conninfo: str):
        super().__init__(daemon=True)
        self.conninfo = conninfo
        self.stop_event = threading.Event()
        self.next_id = 1
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            with psycopg.connect(self.conninfo, autocommit=True) as conn:
                while not self.stop_event.is_set():
                    i = self.next_id
                    conn.execute(f'INSERT INTO {TABLE} ("Id", "Label") VALUES (%s, %s)', (i, f"row {i}"))
                    if i % 3 == 0:
                        conn.execute(f'UPDATE {TABLE} SET "Label" = "Label" || \' updated\' WHERE "Id" = %s', (i - 1,))
                    if i % 7 == 0:
                        conn.execute(f'DELETE FROM {TABLE} WHERE "Id" = %s', (i - 5,))
                    self.next_id += 1
                    time.sleep(0.002)
        except BaseException as exc:  # noqa: BLE001 - reported by the test
            self.error = exc

    def written(self) -> int:
        return self.next_id - 1

    def stop(self) -> None:
        self.stop_event.set()
        self.join(30)
        assert self.error is None, f"writer failed: {self.error!r}"


def table_rows(conn: psycopg.Connection) -> list[tuple]:
    return conn.execute(f'SELECT "Id", "Label" FROM {TABLE} ORDER BY "Id"').fetchall()


def test_end_to_end_with_a_clone_and_a_concurrent_writer(pg_servers, monkeypatch):
    """Rows written before the clone are not applied twice; rows written after it all arrive."""
    source = pg_servers.new("e2esrc")
    with connect(source) as src:
        src.execute(f'CREATE SCHEMA "{SCHEMA}"')
        src.execute(f'CREATE TABLE {TABLE} ("Id" bigint PRIMARY KEY, "Label" text NOT NULL)')
        # The publication exists before the slot: pgoutput looks it up as of each decoded change.
        create_publication(src, "Pub Main", [SCHEMA])
        src.execute("SELECT pg_create_logical_replication_slot('mig_slot', 'pgoutput')")

    writer = Writer(source.conninfo())
    writer.start()
    wait_for(lambda: writer.written() >= 200, 30, "rows before the clone")
    datadir = pg_servers.workdir / "e2eclone"
    result = clone_local(source.conninfo(), datadir, free_port(), pg_servers.bindir)
    clone = LocalServer(datadir=datadir, port=result["port"], bindir=pg_servers.bindir)
    pg_servers.servers.append(clone)
    captured = find_redo_done(clone.log_text())
    assert captured is not None
    written_at_clone = writer.written()

    with connect(clone) as tgt:
        in_clone = len(table_rows(tgt))
        assert in_clone > 0
        # A physical copy has no slots (pg_basebackup leaves pg_replslot out); an Aurora clone would.
        assert tgt.execute("SELECT count(*) FROM pg_replication_slots").fetchone()[0] == 0
        create_subscription(tgt, "Sub Main", source.conninfo(), "Pub Main", "mig_slot")
        origin = advance_origin(tgt, "Sub Main", captured)
        assert origin == captured + 1

    wait_for(lambda: writer.written() >= written_at_clone + 300, 60, "rows after the clone")
    writer.stop()
    assert writer.written() > written_at_clone

    with connect(source) as src, connect(clone) as tgt:
        final = src.execute("SELECT pg_current_wal_lsn()::text").fetchone()[0]
        wait_for(lambda: LSN(measure_lag(src, tgt, "mig_slot", "Sub Main")["confirmed_flush_lsn"]) >= LSN(final),
                 60, "the subscriber to confirm the source's last change")
        assert table_rows(tgt) == table_rows(src)
        assert tgt.execute("SELECT apply_error_count FROM pg_stat_subscription_stats").fetchone()[0] == 0

    # The sensor's check, with connections from AIRFLOW_CONN_* variables as Airflow resolves them.
    monkeypatch.setenv("AIRFLOW_CONN_SRC_PG", f"postgres://postgres@127.0.0.1:{source.port}/postgres")
    monkeypatch.setenv("AIRFLOW_CONN_TGT_PG", "postgres://postgres@127.0.0.1:1/postgres")
    done, payload = poll_native_cdc_lag(source_conn_id="src_pg", target_conn_id="tgt_pg", database="postgres",
                              slot_name="mig_slot", subscription="Sub Main", max_lag_bytes=1024 * 1024,
                              max_apply_age_s=60, control_schema="Mig Control", target_host="127.0.0.1",
                              target_port=clone.port)
    assert done, payload
    with connect(clone) as tgt:
        samples = read_lag_samples(tgt, "Mig Control", "postgres")
        assert len(samples) == 1 and samples[0]["lag_bytes"] == payload["lag_bytes"]
        assert read_lag_samples(tgt, "no such schema", "postgres") == []
    assert payload["lag_bytes"] <= 1024 * 1024 and payload["worker_running"] and payload["apply_age_s"] is not None
    done, payload = poll_native_cdc_lag(source_conn_id="src_pg", target_conn_id="tgt_pg", database="postgres",
                              slot_name="mig_slot", subscription="Sub Main", max_lag_bytes=-1,
                              max_apply_age_s=60, target_host="127.0.0.1", target_port=clone.port)
    assert not done


def test_create_publication_is_idempotent_in_both_forms(pg_servers):
    source = pg_servers.new("pubs")
    with connect(source) as conn:
        conn.execute('CREATE SCHEMA a; CREATE SCHEMA "B b"')
        conn.execute('CREATE TABLE a.t1 (id int PRIMARY KEY); CREATE TABLE "B b"."T 2" (id int PRIMARY KEY)')

        first = create_publication(conn, "by_schema", ["a"])
        assert first["created"] and first["mode"] == "schemas"
        again = create_publication(conn, "by_schema", ["a"])
        assert not again["created"] and again["added"] == []
        more = create_publication(conn, "by_schema", ["a", "B b"])
        assert more["added"] == ["B b"]
        published = conn.execute("SELECT schemaname, tablename FROM pg_publication_tables "
                                 "WHERE pubname = 'by_schema' ORDER BY 1, 2").fetchall()
        assert published == [("B b", "T 2"), ("a", "t1")]

        # The form used for servers before 15: a table list that a rerun extends.
        listed = create_publication(conn, "by_table", ["a", "B b"], by_table=True)
        assert listed["created"] and listed["mode"] == "tables" and len(listed["added"]) == 2
        assert create_publication(conn, "by_table", ["a", "B b"], by_table=True)["added"] == []
        conn.execute("CREATE TABLE a.t3 (id int PRIMARY KEY)")
        assert create_publication(conn, "by_table", ["a", "B b"], by_table=True)["added"] == ['"a"."t3"']
        assert conn.execute("SELECT count(*) FROM pg_publication_tables WHERE pubname = 'by_table'").fetchone()[0] == 3

        conn.execute("CREATE TABLE a.no_key (x int)")
        with pytest.raises(NativeCdcError, match=r'"a"\."no_key"'):
            create_publication(conn, "refused", ["a"])
        with pytest.raises(NativeCdcError, match="do not exist"):
            create_publication(conn, "refused", ["nope"])
        with pytest.raises(ValueError, match="publication"):
            create_publication(conn, "", ["a"])
        assert conn.execute("SELECT count(*) FROM pg_publication WHERE pubname = 'refused'").fetchone()[0] == 0

        assert drop_publication(conn, "by_table") is True
        assert drop_publication(conn, "by_table") is False


def test_subscription_functions_are_idempotent(pg_servers):
    source = pg_servers.new("subsrc")
    target = pg_servers.new("subtgt")
    with connect(source) as src, connect(target) as tgt:
        for conn in (src, tgt):
            conn.execute("CREATE TABLE t (id int PRIMARY KEY)")
        create_publication(src, "pub", ["public"])
        src.execute("SELECT pg_create_logical_replication_slot('slot1', 'pgoutput')")
        lsn = LSN(src.execute("SELECT pg_current_wal_lsn()::text").fetchone()[0])

        assert create_subscription(tgt, "sub", source.conninfo(), "pub", "slot1")["created"]
        assert not create_subscription(tgt, "sub", source.conninfo(), "pub", "slot1")["created"]
        with pytest.raises(NativeCdcError, match="already exists with slot"):
            create_subscription(tgt, "sub", source.conninfo(), "pub", "other_slot")
        with pytest.raises(ValueError, match="captured_lsn"):
            advance_origin(tgt, "sub", "12-34")

        assert advance_origin(tgt, "sub", lsn) == lsn + 1
        # Rerun while enabled: nothing moves.
        assert advance_origin(tgt, "sub", lsn) == lsn + 1
        assert subscription_state(tgt, "sub")["enabled"]
        src.execute("INSERT INTO t VALUES (1)")
        wait_for(lambda: tgt.execute("SELECT count(*) FROM t").fetchone()[0] == 1, 30, "the row to arrive")

        # Disabled again, a rerun with the old captured LSN must not move the origin back.
        tgt.execute("ALTER SUBSCRIPTION sub DISABLE")
        progressed = LSN(wait_for(lambda: subscription_state(tgt, "sub")["origin_lsn"], 10, "origin progress"))
        assert progressed > lsn + 1
        assert advance_origin(tgt, "sub", lsn) == lsn + 1
        assert LSN(subscription_state(tgt, "sub")["origin_lsn"]) == progressed
        with pytest.raises(NativeCdcError, match="exactly one"):
            advance_origin(tgt, "sub", lsn, origin_lsn=lsn)

        assert drop_subscription(tgt, "sub") is True
        assert drop_subscription(tgt, "sub") is False
        assert src.execute("SELECT count(*) FROM pg_replication_slots WHERE slot_name = 'slot1'").fetchone()[0] == 1


def test_operators_and_lag_sensor(pg_servers, monkeypatch, capfd):
    """The tasks as the DAG runs them: publication, subscription from the captured LSN, lag sensor."""
    from operators.native_cdc import CreatePublicationOperator, CreateSubscriptionOperator
    from sensors.cdc_lag import CdcLagSensor

    source = pg_servers.new("opsrc")
    monkeypatch.setenv("AIRFLOW_CONN_OP_SOURCE", f"postgres://postgres@127.0.0.1:{source.port}/postgres")
    monkeypatch.setenv("AIRFLOW_CONN_OP_TARGET", "postgres://postgres@127.0.0.1:1/postgres")
    with connect(source) as src:
        src.execute("CREATE TABLE t (id int PRIMARY KEY)")
        src.execute("INSERT INTO t SELECT generate_series(1, 10)")
    published = CreatePublicationOperator(task_id="create_publication", source_conn_id="op_source",
                                          database="postgres", publication="op_pub", schemas=["public"]).execute({})
    assert published["created"]
    with connect(source) as src:
        src.execute("SELECT pg_create_logical_replication_slot('op_slot', 'pgoutput')")
    clone = pg_servers.clone(source)
    captured = find_redo_done(clone.log_text())
    with connect(source) as src:
        src.execute("INSERT INTO t SELECT generate_series(11, 20)")

    subscribe = CreateSubscriptionOperator(
        task_id="start_cdc", source_conn_id="op_source", target_conn_id="op_target", database="postgres",
        subscription="op_sub", publication="op_pub", slot_name="op_slot", captured_lsn=str(captured),
        target_host="127.0.0.1", target_port=str(clone.port))
    capfd.readouterr()
    assert subscribe.execute({}) == str(captured + 1)
    # Without source.replication_conn_id the task log says which login replicates (README, config reference).
    assert "No replication_conn_id: the subscription connects as the source connection op_source" in "".join(
        capfd.readouterr())
    assert subscribe.execute({}) == str(captured + 1)

    sensor = CdcLagSensor(task_id="wait_cdc", source_conn_id="op_source", target_conn_id="op_target",
                          database="postgres", slot_name="op_slot", subscription="op_sub", max_lag_bytes=1024 * 1024,
                          max_apply_age_seconds=60, target_host="127.0.0.1", target_port=clone.port,
                          deferrable=False, poll_interval=0.2, timeout=60)
    payload = sensor.execute({})
    assert payload["lag_bytes"] <= 1024 * 1024 and payload["worker_running"]
    with connect(clone) as tgt:
        wait_for(lambda: tgt.execute("SELECT count(*) FROM t").fetchone()[0] == 20, 30, "rows after the clone")


DRIFT_SCHEMA = "Shop Floor"


@pytest.mark.safety
def test_lag_check_names_the_failing_apply_worker_and_the_drift(pg_servers, monkeypatch):
    """ADD COLUMN on the source after the clone stops the apply worker: the lag check says so, not only the
    target server's log, and names the drift (issue 8, scenario 9)."""
    source = pg_servers.new("applysrc")
    with connect(source) as src:
        src.execute(f'CREATE SCHEMA "{DRIFT_SCHEMA}"')
        src.execute(f'CREATE TABLE "{DRIFT_SCHEMA}".items (id int PRIMARY KEY, name text)')
        src.execute(f"INSERT INTO \"{DRIFT_SCHEMA}\".items SELECT g, 'i' || g FROM generate_series(1, 5) g")
        create_publication(src, "pub", [DRIFT_SCHEMA])
        src.execute("SELECT pg_create_logical_replication_slot('slot', 'pgoutput')")
    clone = pg_servers.clone(source)
    with connect(clone) as tgt:
        create_subscription(tgt, "sub", source.conninfo(), "pub", "slot")
        advance_origin(tgt, "sub", find_redo_done(clone.log_text()))
    monkeypatch.setenv("AIRFLOW_CONN_APPLY_SRC", f"postgres://postgres@127.0.0.1:{source.port}/postgres")
    monkeypatch.setenv("AIRFLOW_CONN_APPLY_TGT", f"postgres://postgres@127.0.0.1:{clone.port}/postgres")
    lag_args = {"source_conn_id": "apply_src", "target_conn_id": "apply_tgt", "database": "postgres",
                "slot_name": "slot", "subscription": "sub", "max_lag_bytes": 0, "max_apply_age_s": 60,
                "schemas": [DRIFT_SCHEMA]}

    with connect(source) as src:
        src.execute(f'ALTER TABLE "{DRIFT_SCHEMA}".items ADD COLUMN price numeric')
        src.execute(f"INSERT INTO \"{DRIFT_SCHEMA}\".items VALUES (6, 'i6', 9.5)")
    with connect(clone) as tgt:
        wait_for(lambda: tgt.execute("SELECT apply_error_count FROM pg_stat_subscription_stats "
                                     "WHERE subname = 'sub'").fetchone()[0] > 0, 60, "the apply worker to fail")

    # The check as it was called before drift existed (no schemas): it names the failing apply worker.
    done, payload = poll_native_cdc_lag(**{k: v for k, v in lag_args.items() if k != "schemas"})
    assert not done and "schema_drift" not in payload
    assert payload["problem"].startswith("subscription sub: the apply worker keeps failing (apply_error_count ")
    assert "check the target server's log" in payload["problem"]

    # With the migrated schemas it also names the drift behind it.
    done, payload = poll_native_cdc_lag(**lag_args)
    assert not done
    problem = payload["problem"]
    assert "the apply worker keeps failing (apply_error_count" in problem
    assert "check the target server's log" in problem and "schema drift" in problem
    assert 'column "Shop Floor".items.price: only on the source (numeric null)' in problem
    assert payload["schema_drift"] == ['column "Shop Floor".items.price: only on the source (numeric null)']
    assert list(payload)[0] == "problem"

    # The lag sensor's timeout says what is wrong first.
    from airflow.sdk.exceptions import AirflowException

    from sensors.cdc_lag import CdcLagSensor

    sensor = CdcLagSensor(task_id="wait_cdc_lag", source_conn_id="apply_src", target_conn_id="apply_tgt",
                          database="postgres", slot_name="slot", subscription="sub", max_lag_bytes=0,
                          schemas=[DRIFT_SCHEMA])
    assert sensor.poll_kwargs({})["schemas"] == [DRIFT_SCHEMA]
    with pytest.raises(AirflowException, match=r"wait_cdc_lag: subscription sub: the apply worker keeps failing"):
        sensor.execute_complete({}, {"status": "timeout", "payload": payload, "message": "not done after 1 s"})

    # Fixing the target lets CDC resume: the row arrives and the problem goes away.
    with connect(clone) as tgt:
        tgt.execute(f'ALTER TABLE "{DRIFT_SCHEMA}".items ADD COLUMN price numeric')
        wait_for(lambda: tgt.execute(f'SELECT price FROM "{DRIFT_SCHEMA}".items WHERE id = 6').fetchone(), 60,
                 "the row written after the ADD COLUMN")
    done, payload = poll_native_cdc_lag(**{**lag_args, "max_lag_bytes": 1 << 30})
    assert done and "problem" not in payload
