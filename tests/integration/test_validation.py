"""The chunked comparison on real servers: clean while CDC runs, planted mismatches found and proven.

Rechecks count only mismatches proven on a stable source after CDC has applied past it: chunks that a
writer keeps changing settle clean instead of being declared persistent, and are never counted.
"""

from __future__ import annotations

import logging
import re
import threading
import time

import psycopg
import pytest

from migration.lsn import LSN, find_redo_done
from migration.native_cdc import advance_origin, create_publication, create_subscription, measure_lag
from migration.validation import ValidationError, run_key, run_validation
from triggers.checks import poll_native_validation

pytestmark = pytest.mark.integration

SCHEMA = "Mixed Case"
WEIRD = '"Mixed Case"."Weird ""Quoted"" Name"'
NO_KEY = '"Mixed Case"."no key"'
CONTROL = "Migration Control"
HOT = "Hot Spot"
COUNTS = '"Hot Spot".counts'
TALLY = '"Hot Spot".tally'
STABLE = '"Hot Spot".stable'
UNPUBLISHED = "Not Published"
RUN = "manual__2026-01-01T00:00:00+00:00"
TICKER = '"Not Published".ticker'


def connect(server, dbname: str = "postgres") -> psycopg.Connection:
    return psycopg.connect(server.conninfo(dbname), autocommit=True)


def wait_for(predicate, timeout: float, what: str, interval: float = 0.1):
    deadline = time.monotonic() + timeout
    while not (value := predicate()):
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(interval)
    return value


@pytest.fixture(scope="module")
def pair(pg_servers):
    """A source and its clone joined by native CDC, with awkward names and types."""
    source = pg_servers.new("valsrc")
    with connect(source) as src:
        src.execute(f'CREATE SCHEMA "{SCHEMA}"')
        src.execute(f'''CREATE TABLE {WEIRD} ("Key Col" int, "k 2" text, amount numeric(12, 3), at timestamptz,
                        doc jsonb, raw bytea, ratio float8, PRIMARY KEY ("Key Col", "k 2"))''')
        src.execute(f'''INSERT INTO {WEIRD} SELECT g, 'k' || (g % 3), g * 1.5,
                        timestamptz '2026-01-01' + g * interval '1 min',
                        jsonb_build_object('g', g), decode(md5(g::text), 'hex'), g / 7.0
                        FROM generate_series(1, 500) g''')
        src.execute(f"CREATE TABLE {NO_KEY} (x int, y text) WITH (autovacuum_enabled = off)")
        src.execute(f"ALTER TABLE {NO_KEY} REPLICA IDENTITY FULL")
        src.execute(f"INSERT INTO {NO_KEY} SELECT g, 'y' || g FROM generate_series(1, 120) g")
        src.execute(f'CREATE TABLE "{SCHEMA}".empty (id int PRIMARY KEY)')
        # Like the demo's event_purchase_count: a small table a trigger updates on every insert elsewhere.
        src.execute(f'CREATE SCHEMA "{HOT}"')
        src.execute(f"CREATE TABLE {COUNTS} (event_id int PRIMARY KEY, purchases bigint NOT NULL)")
        src.execute(f'CREATE TABLE "{HOT}".purchases (id bigserial PRIMARY KEY, event_id int NOT NULL)')
        src.execute(f"""CREATE FUNCTION "{HOT}".count_purchase() RETURNS trigger LANGUAGE plpgsql AS $$
                        BEGIN
                            INSERT INTO {COUNTS} AS c VALUES (NEW.event_id, 1)
                            ON CONFLICT (event_id) DO UPDATE SET purchases = c.purchases + 1;
                            RETURN NEW;
                        END $$""")
        src.execute(f'CREATE TRIGGER count_purchase AFTER INSERT ON "{HOT}".purchases '
                    f'FOR EACH ROW EXECUTE FUNCTION "{HOT}".count_purchase()')
        src.execute(f"CREATE TABLE {TALLY} (k int, n bigint)")
        src.execute(f"ALTER TABLE {TALLY} REPLICA IDENTITY FULL")
        src.execute(f"INSERT INTO {TALLY} SELECT g, 0 FROM generate_series(1, 20) g")
        src.execute(f"CREATE TABLE {STABLE} (id int PRIMARY KEY, v text)")
        src.execute(f"INSERT INTO {STABLE} SELECT g, 'v' || g FROM generate_series(1, 300) g")
        # A table CDC never carries: its changes on the source are differences the target can never catch up on.
        src.execute(f'CREATE SCHEMA "{UNPUBLISHED}"')
        src.execute(f"CREATE TABLE {TICKER} (id int PRIMARY KEY, n bigint NOT NULL)")
        src.execute(f"INSERT INTO {TICKER} VALUES (1, 0)")
        create_publication(src, "pub", [SCHEMA, HOT])
        src.execute("SELECT pg_create_logical_replication_slot('slot', 'pgoutput')")
    clone = pg_servers.clone(source)
    with connect(clone) as tgt:
        # Another default time zone on the target must not change any digest.
        tgt.execute("ALTER DATABASE postgres SET timezone = 'Asia/Tokyo'")
        create_subscription(tgt, "sub", source.conninfo(), "pub", "slot")
        advance_origin(tgt, "sub", find_redo_done(clone.log_text()))
    return source, clone


def caught_up(source, clone) -> None:
    with connect(source) as src, connect(clone) as tgt:
        final = LSN(src.execute("SELECT pg_current_wal_lsn()::text").fetchone()[0])
        wait_for(lambda: LSN(measure_lag(src, tgt, "slot", "sub")["confirmed_flush_lsn"]) >= final, 60,
                 "CDC to catch up")


def test_clean_while_cdc_applies_concurrent_writes(pair, caplog):
    source, clone = pair
    stop = threading.Event()

    def write():
        with connect(source) as conn:
            i = 1000
            while not stop.is_set():
                conn.execute(f"INSERT INTO {WEIRD} (\"Key Col\", \"k 2\", amount) VALUES (%s, 'w', 1)", (i,))
                conn.execute(f'UPDATE {WEIRD} SET amount = amount + 1 WHERE "Key Col" = %s', (i % 500 + 1,))
                conn.execute(f"UPDATE {NO_KEY} SET y = y || '.' WHERE x = %s", (i % 120 + 1,))
                i += 1

    writer = threading.Thread(target=write, daemon=True)
    writer.start()
    with connect(source) as src, connect(clone) as tgt, caplog.at_level(logging.INFO, logger="migration.validation"):
        first = run_validation(src, tgt, schemas=[SCHEMA], control_schema=CONTROL, run_id=RUN,
                               validation_id="clean run", chunk_rows=50)
        stop.set()
        writer.join(10)
        caught_up(source, clone)
        result = first
        for _ in range(10):
            if result["clean"]:
                break
            result = run_validation(src, tgt, schemas=[SCHEMA], control_schema=CONTROL, run_id=RUN,
                                    validation_id="clean run", chunk_rows=50, max_rechecks=10)
        assert result["clean"], result
        assert result["tables"] == 3 and result["rows_compared"] >= 620 and result["chunks"] > 10
        assert result["mismatched_chunks"] == 0 and result["persistent"] == 0
    assert any("100% of rows compared" in r.getMessage() for r in caplog.records)
    progress = [r.getMessage() for r in caplog.records if re.search(r"\d+% of rows compared", r.getMessage())]
    assert len(progress) >= 3, progress


def test_clean_while_inserts_keep_arriving(pair):
    """New rows land above the source's highest key; they are lag, not mismatches, while CDC keeps up."""
    source, clone = pair
    caught_up(source, clone)
    stop = threading.Event()

    def insert():
        with connect(source) as conn:
            i = 100000
            while not stop.is_set():
                conn.execute(f"INSERT INTO {WEIRD} (\"Key Col\", \"k 2\") VALUES (%s, 'new')", (i,))
                i += 1
                time.sleep(0.001)

    writer = threading.Thread(target=insert, daemon=True)
    writer.start()
    try:
        with connect(source) as src, connect(clone) as tgt:
            result = None
            for _ in range(15):
                result = run_validation(src, tgt, schemas=[f"{SCHEMA}"], control_schema=CONTROL,
                                        run_id=RUN, validation_id="under load", chunk_rows=100, max_rechecks=20)
                if result["clean"]:
                    break
                time.sleep(0.3)
            assert result["clean"], result
            assert writer.is_alive()
    finally:
        stop.set()
        writer.join(10)


def test_planted_mismatches_are_found_rechecked_and_proven(pair, monkeypatch):
    source, clone = pair
    caught_up(source, clone)
    with connect(source) as src, connect(clone) as tgt:
        top = src.execute(f'SELECT max("Key Col") FROM {WEIRD}').fetchone()[0]
        # Writes on the target behind CDC's back: a changed row, a row past the source's last key, a no-key row.
        tgt.execute(f'UPDATE {WEIRD} SET amount = -1 WHERE "Key Col" = 250')
        tgt.execute(f"INSERT INTO {WEIRD} (\"Key Col\", \"k 2\") VALUES (%s, 'extra')", (top + 1,))
        tgt.execute(f"UPDATE {NO_KEY} SET y = 'planted' WHERE x = 7")

        found = run_validation(src, tgt, schemas=[SCHEMA], control_schema=CONTROL, run_id=RUN, validation_id="planted",
                               chunk_rows=50, max_rechecks=2)
        assert not found["clean"] and found["mismatched_chunks"] == 3 and found["persistent"] == 0
        again = run_validation(src, tgt, schemas=[SCHEMA], control_schema=CONTROL, run_id=RUN, validation_id="planted",
                               chunk_rows=50, max_rechecks=2)
        assert again["mismatched_chunks"] == 3 and again["persistent"] == 0
        with pytest.raises(ValidationError) as raised:
            run_validation(src, tgt, schemas=[SCHEMA], control_schema=CONTROL, run_id=RUN, validation_id="planted",
                           chunk_rows=50, max_rechecks=2)
        message = str(raised.value)
        assert "3 chunk(s) still differ after 2 rechecks" in message
        assert '"Mixed Case"."Weird ""Quoted"" Name" keys (Key Col, k 2)' in message
        assert ".. end]" in message
        assert '"Mixed Case"."no key" (whole table, no primary key)' in message
        rows = tgt.execute('SELECT table_name, state, rechecks, source_digest <> target_digest FROM '
                           f'"{CONTROL}".validation_failures '
                           "WHERE validation_id = %s ORDER BY 1, chunk_key", (run_key("planted", RUN),)).fetchall()
        assert [r[1:] for r in rows] == [("persistent", 2, True)] * 3

        # Fixed data turns the failures clean on the next call (a rerun of the sensor).
        tgt.execute(f'DELETE FROM {WEIRD} WHERE "Key Col" = %s', (top + 1,))
        tgt.execute(f'UPDATE {WEIRD} AS t SET amount = %s WHERE "Key Col" = 250',
                    (src.execute(f'SELECT amount FROM {WEIRD} WHERE "Key Col" = 250').fetchone()[0],))
        src_y = src.execute(f"SELECT y FROM {NO_KEY} WHERE x = 7").fetchone()[0]
        tgt.execute(f"UPDATE {NO_KEY} SET y = %s WHERE x = 7", (src_y,))
        fixed = run_validation(src, tgt, schemas=[SCHEMA], control_schema=CONTROL, run_id=RUN, validation_id="planted",
                               chunk_rows=50, max_rechecks=2)
        assert fixed["clean"], fixed

    monkeypatch.setenv("AIRFLOW_CONN_VAL_SRC", f"postgres://postgres@127.0.0.1:{source.port}/postgres")
    monkeypatch.setenv("AIRFLOW_CONN_VAL_TGT", f"postgres://postgres@127.0.0.1:{clone.port}/postgres")
    done, payload = poll_native_validation(source_conn_id="val_src", target_conn_id="val_tgt", database="postgres",
                                     schemas=[SCHEMA], control_schema=CONTROL, run_id=RUN, validation_id="planted",
                                     chunk_rows=50, max_rechecks=2)
    assert done and payload["mismatched_chunks"] == 0 and payload["rows_compared"] > 0
    assert set(payload) >= {"tables", "rows_compared", "mismatched_chunks", "persistent"}


def test_bad_input_creates_nothing(pair):
    source, clone = pair
    with connect(source) as src, connect(clone) as tgt:
        with pytest.raises(ValueError, match="chunk_rows"):
            run_validation(src, tgt, schemas=[SCHEMA], control_schema="nothing here", run_id=RUN, validation_id="x",
                           chunk_rows=0)
        with pytest.raises(ValueError, match="schemas"):
            run_validation(src, tgt, schemas=[], control_schema="nothing here", run_id=RUN, validation_id="x")
        with pytest.raises(ValueError, match="slot_name: slot 'no such slot' does not exist"):
            run_validation(src, tgt, schemas=[SCHEMA], control_schema="nothing here", run_id=RUN, validation_id="x",
                           slot_name="no such slot")
        with pytest.raises(ValueError, match="cdc_wait_s"):
            run_validation(src, tgt, schemas=[SCHEMA], control_schema="nothing here", run_id=RUN, validation_id="x",
                           cdc_wait_s=-1)
        for run_id in ("", "{{ run_id }}", None):
            with pytest.raises(ValueError, match="run_id"):
                run_validation(src, tgt, schemas=[SCHEMA], control_schema="nothing here", run_id=run_id,
                               validation_id="x")
        assert tgt.execute("SELECT count(*) FROM pg_namespace WHERE nspname = 'nothing here'").fetchone()[0] == 0


def test_sensor_runs_the_check_and_defers_while_rechecks_are_due(pair, monkeypatch):
    from airflow.sdk.exceptions import TaskDeferred

    from sensors.validation import ValidationCleanSensor

    source, clone = pair
    caught_up(source, clone)
    monkeypatch.setenv("AIRFLOW_CONN_VAL_SRC", f"postgres://postgres@127.0.0.1:{source.port}/postgres")
    monkeypatch.setenv("AIRFLOW_CONN_VAL_TGT", "postgres://postgres@127.0.0.1:1/postgres")

    def sensor(validation_id: str) -> ValidationCleanSensor:
        return ValidationCleanSensor(task_id="wait_validation", source_conn_id="val_src", target_conn_id="val_tgt",
                                     database="postgres", schemas=[SCHEMA], validation_id=validation_id,
                                     control_schema=CONTROL, chunk_rows=100, max_rechecks=2, slot_name="slot",
                                     target_host="127.0.0.1", target_port=str(clone.port), run_id=RUN)

    payload = sensor("sensor clean").execute({})
    assert payload["clean"] and payload["tables"] == 3

    with connect(clone) as tgt:
        tgt.execute(f'UPDATE {WEIRD} SET doc = \'{{"planted": true}}\' WHERE "Key Col" = 3')
    with pytest.raises(TaskDeferred) as deferred:
        sensor("sensor planted").execute({})
    _, kwargs = deferred.value.trigger.serialize()
    assert kwargs["check"] == "triggers.checks:poll_native_validation"
    assert kwargs["kwargs"]["target_port"] == clone.port and kwargs["kwargs"]["validation_id"] == "sensor planted"
    assert kwargs["kwargs"]["slot_name"] == "slot" and kwargs["kwargs"]["run_id"] == RUN
    with connect(source) as src, connect(clone) as tgt:
        doc = src.execute(f'SELECT doc FROM {WEIRD} WHERE "Key Col" = 3').fetchone()[0]
        tgt.execute(f'UPDATE {WEIRD} SET doc = %s WHERE "Key Col" = 3', (psycopg.types.json.Jsonb(doc),))


class HotWriter:
    """Keeps buying tickets (each one updates a row of the counts table through the trigger), every tenth
    time also bumping a row of the keyless tally, until stopped; ``ticker`` also bumps the unpublished ticker.

    A table without a key can only be compared by row content, so rows that change several times within
    one recheck (a second or so) keep it in flux: the tally is changed about as often as the demo's mlb_data.
    """

    def __init__(self, source, *, pause: float = 0.002, ticker: bool = False):
        self.source, self.pause, self.ticker = source, pause, ticker
        self.stop_event = threading.Event()
        self.committed = 0
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        with connect(self.source) as conn:
            i = 0
            while not self.stop_event.is_set():
                with conn.transaction():
                    conn.execute(f'INSERT INTO "{HOT}".purchases (event_id) VALUES (%s)', (i % 40 + 1,))
                    if i % 10 == 0:
                        conn.execute(f"UPDATE {TALLY} SET n = n + 1 WHERE k = %s", (i // 10 % 20 + 1,))
                    if self.ticker:
                        conn.execute(f"UPDATE {TICKER} SET n = n + 1")
                self.committed += 1
                i += 1
                if self.pause:
                    time.sleep(self.pause)

    def __enter__(self) -> HotWriter:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    def stop(self) -> None:
        self.stop_event.set()
        self.thread.join(10)


def failure_rows(tgt, validation_id: str) -> dict[str, tuple[str, int]]:
    rows = tgt.execute(f'SELECT table_name, state, rechecks FROM "{CONTROL}".validation_failures '
                       "WHERE validation_id = %s", (run_key(validation_id, RUN),)).fetchall()
    return {name: (state, rechecks) for name, state, rechecks in rows}


def test_chunks_a_writer_keeps_changing_settle_clean_and_are_never_persistent(pair, caplog):
    source, clone = pair
    caught_up(source, clone)
    kwargs = {"run_id": RUN, "schemas": [HOT], "control_schema": CONTROL, "chunk_rows": 1000, "max_rechecks": 2,
              "slot_name": "slot"}
    with HotWriter(source) as writer, connect(source) as src, connect(clone) as tgt, \
            caplog.at_level(logging.INFO, logger="migration.validation"):
        wait_for(lambda: writer.committed > 200, 30, "the writer to get going")
        committed_before = writer.committed
        first = run_validation(src, tgt, validation_id="hot", **kwargs)
        # Hundreds of updates a second reach the target only after CDC's delay, so a single compare differs.
        assert not first["clean"] and first["persistent"] == 0, first
        assert any("counts" in f or "tally" in f for f in first["failures"]), first
        result, calls = first, 1
        while not result["clean"] and calls < 10:
            result = run_validation(src, tgt, validation_id="hot", **kwargs)  # raises if anything turned persistent
            calls += 1
        assert result["clean"] and result["persistent"] == 0, result
        # The writer kept changing the chunks while they were compared and rechecked.
        assert writer.thread.is_alive() and writer.committed > committed_before
        assert all(state == "clean" for state, _ in failure_rows(tgt, "hot").values())
    rechecks = [r.getMessage() for r in caplog.records if "recheck of" in r.getMessage()]
    # Every recheck settled clean or was left undetermined: none counted towards persistence.
    assert rechecks and all(": clean after" in m or "not counted" in m for m in rechecks), rechecks

    caught_up(source, clone)
    with connect(source) as src, connect(clone) as tgt:
        again = run_validation(src, tgt, validation_id="hot after the writer", **kwargs)
        assert again["clean"] and again["mismatched_chunks"] == 0 and again["tables"] == 4, again


def test_a_real_mismatch_next_to_a_hot_chunk_still_turns_persistent(pair, caplog):
    source, clone = pair
    caught_up(source, clone)
    kwargs = {"run_id": RUN, "schemas": [HOT], "control_schema": CONTROL, "chunk_rows": 100, "max_rechecks": 2,
              "slot_name": "slot"}
    with connect(source) as src, connect(clone) as tgt:
        tgt.execute(f"UPDATE {STABLE} SET v = 'planted' WHERE id = 150")
        try:
            with HotWriter(source), caplog.at_level(logging.INFO, logger="migration.validation"):
                first = run_validation(src, tgt, validation_id="hot planted", **kwargs)
                assert failure_rows(tgt, "hot planted")["stable"] == ("pending", 0), first
                second = run_validation(src, tgt, validation_id="hot planted", **kwargs)
                assert second["persistent"] == 0 and failure_rows(tgt, "hot planted")["stable"] == ("pending", 1)
                with pytest.raises(ValidationError) as raised:
                    run_validation(src, tgt, validation_id="hot planted", **kwargs)
            message = str(raised.value)
            assert message.startswith(f"validation hot planted (run {RUN}): 1 chunk(s) still differ after 2 rechecks: "
                                      '"Hot Spot"."stable" keys (id) in ((100) .. (200)]'), message
            rows = failure_rows(tgt, "hot planted")
            assert rows["stable"] == ("persistent", 2)
            assert all(state != "persistent" for name, (state, _) in rows.items() if name != "stable"), rows
            proven = [r.getMessage() for r in caplog.records if 'recheck of "Hot Spot"."stable"' in r.getMessage()]
            assert len(proven) == 2 and proven[-1].endswith("persistent after 1 attempt(s)")
        finally:
            tgt.execute(f"UPDATE {STABLE} SET v = 'v150' WHERE id = 150")


def test_a_chunk_in_flux_is_not_counted_and_a_stable_difference_is(pair, caplog):
    """The ticker changes on the source all the time and never reaches the target: while it changes no
    recheck can tell lag from loss, so none counts (even with max_rechecks 1); once it holds still, one does."""
    source, clone = pair
    caught_up(source, clone)
    kwargs = {"run_id": RUN, "schemas": [UNPUBLISHED], "control_schema": CONTROL, "max_rechecks": 1,
              "slot_name": "slot", "recheck_attempts": 3}
    with connect(source) as src, connect(clone) as tgt:
        with HotWriter(source, pause=0, ticker=True) as writer, \
                caplog.at_level(logging.INFO, logger="migration.validation"):
            wait_for(lambda: writer.committed > 50, 30, "the writer to get going")
            first = run_validation(src, tgt, validation_id="ticker", **kwargs)
            assert first["mismatched_chunks"] == 1 and failure_rows(tgt, "ticker") == {"ticker": ("pending", 0)}
            for _ in range(2):
                result = run_validation(src, tgt, validation_id="ticker", **kwargs)
                assert result["in_flux"] == 1 and result["persistent"] == 0 and not result["clean"], result
                assert failure_rows(tgt, "ticker") == {"ticker": ("pending", 0)}
        flux = [r.getMessage() for r in caplog.records if "recheck of" in r.getMessage()]
        assert len(flux) == 2 and all("in_flux, not counted after 3 attempt(s)" in m for m in flux), flux

        with pytest.raises(ValidationError, match=r'1 chunk\(s\) still differ after 1 rechecks: "Not Published"'):
            run_validation(src, tgt, validation_id="ticker", **kwargs)
        assert failure_rows(tgt, "ticker") == {"ticker": ("persistent", 1)}
