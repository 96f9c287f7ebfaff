"""Time to in-sync: the local path (pg_basebackup clone, native CDC from the clone point, a clean
validation) against ``pgcopydb clone --follow`` up to the same point, on the same source.

The source holds one table of the issue's columns (bigserial, int, md5 text, numeric, bytea), about
1 GB at ``BENCH_SIZE=full``; a writer inserts a row every 20 ms throughout. The point both reach is the
source's WAL position when the run starts (for pgcopydb: right after it created its slot): ours is in sync
when the subscription has confirmed past it and a validation pass is clean, pgcopydb when its replay has
passed it (``replay_lsn`` of its sentinel table on the source). pgcopydb 0.10 applies changes one WAL segment
file at a time, so while it catches up the source's WAL is switched every second (``pg_switch_wal()``), as a
busier source would; native CDC needs no such help.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import threading
import time

import psycopg
from common import line, pgcopydb, servers, size

ROWS = size(300_000, 10_000_000)


class Trickle:
    """Inserts one row every 20 ms into the source until stopped."""

    def __init__(self, conninfo: str):
        self.conninfo, self.stop_event = conninfo, threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        with psycopg.connect(self.conninfo, autocommit=True) as conn:
            while not self.stop_event.wait(0.02):
                conn.execute("INSERT INTO bench_rows (n, t) VALUES (-1, 'trickle')")

    def __enter__(self) -> Trickle:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop_event.set()
        self.thread.join(10)


def load(conninfo: str) -> int:
    with psycopg.connect(conninfo, autocommit=True) as conn:
        conn.execute("CREATE TABLE bench_rows (id bigserial PRIMARY KEY, n int, t text, x numeric, b bytea)")
        for start in range(0, ROWS, 1_000_000):
            conn.execute("INSERT INTO bench_rows (n, t, x, b) SELECT g, md5(g::text), g * 1.25, "
                         "decode(md5(g::text), 'hex') FROM generate_series(%s, %s) g",
                         (start + 1, min(ROWS, start + 1_000_000)))
        conn.execute("VACUUM ANALYZE bench_rows")
        conn.execute("CHECKPOINT")
        return conn.execute("SELECT pg_database_size('postgres')").fetchone()[0]


def current_lsn(conninfo: str):
    from migration.lsn import LSN

    with psycopg.connect(conninfo, autocommit=True) as conn:
        return LSN(conn.execute("SELECT pg_current_wal_lsn()::text").fetchone()[0])


def ours(source, workdir) -> tuple[float, dict]:
    from migration.local_clone import clone_local
    from migration.localpg import LocalServer, free_port
    from migration.lsn import LSN, find_redo_done
    from migration.native_cdc import advance_origin, create_publication, create_subscription, measure_lag
    from migration.validation import run_validation

    point = current_lsn(source.conninfo())
    started = time.perf_counter()
    with psycopg.connect(source.conninfo(), autocommit=True) as src:
        create_publication(src, "bench_pub", ["public"])
        src.execute("SELECT pg_create_logical_replication_slot('bench_slot', 'pgoutput')")
    result = clone_local(source.conninfo(), workdir / "ours", free_port(), source.bindir)
    clone = LocalServer(datadir=workdir / "ours", port=result["port"], bindir=source.bindir)
    cloned = time.perf_counter() - started
    try:
        with psycopg.connect(source.conninfo(), autocommit=True) as src, \
                psycopg.connect(clone.conninfo(), autocommit=True) as tgt:
            create_subscription(tgt, "bench_sub", source.conninfo(), "bench_pub", "bench_slot")
            advance_origin(tgt, "bench_sub", find_redo_done(clone.log_text()))
            while LSN(measure_lag(src, tgt, "bench_slot", "bench_sub")["confirmed_flush_lsn"] or "0/0") < point:
                time.sleep(0.01)
            caught_up = time.perf_counter() - started
            check = {"clean": False}
            while not check["clean"]:
                check = run_validation(src, tgt, schemas=["public"], control_schema="bench_control",
                                       validation_id="in-sync", run_id="bench", slot_name="bench_slot",
                                       chunk_rows=100_000)
        total = time.perf_counter() - started
        return total, {"clone": cloned, "cdc": caught_up - cloned, "validation": total - caught_up,
                       "rows": check["rows_compared"]}
    finally:
        clone.stop(mode="immediate")


def theirs(binary: str, source, target, workdir) -> float:
    """Seconds until pgcopydb's replay (its sentinel's replay_lsn) passes the source's position taken right
    after it created its slot; then it is stopped."""
    from migration.lsn import LSN

    env = {**os.environ, "PATH": f"{source.bindir}:{os.environ['PATH']}"}
    log = (workdir / "pgcopydb.log").open("wb")
    started = time.perf_counter()
    proc = subprocess.Popen([binary, "clone", "--source", source.conninfo(), "--target", target.conninfo(),
                             "--dir", str(workdir / "pgcopydb"), "--follow", "--table-jobs", "2", "--index-jobs", "2"],
                            stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True)
    try:
        with psycopg.connect(source.conninfo(), autocommit=True) as src:
            point, next_switch, next_log_check = None, 0.0, 0.0
            while True:
                if proc.poll() is not None:
                    raise RuntimeError(f"pgcopydb exited with {proc.returncode}; see {workdir / 'pgcopydb.log'}")
                if time.perf_counter() >= next_log_check:
                    # A replay process that failed leaves pgcopydb running but never catching up.
                    text = (workdir / "pgcopydb.log").read_text(errors="replace")
                    if "has terminated" in text:
                        errors = [t for t in text.splitlines() if " ERROR " in t][:6]
                        raise RuntimeError("pgcopydb's replay stopped: " + " | ".join(errors))
                    next_log_check = time.perf_counter() + 1.0
                if point is None and src.execute("SELECT 1 FROM pg_replication_slots WHERE slot_name = 'pgcopydb'"
                                                 ).fetchone():
                    point = LSN(src.execute("SELECT pg_current_wal_lsn()::text").fetchone()[0])
                if point is not None:
                    if time.perf_counter() >= next_switch:
                        # pgcopydb 0.10 turns changes into SQL one WAL segment file at a time: a trickle
                        # of writes would take minutes to fill one. A switch ends the segment at once.
                        src.execute("SELECT pg_switch_wal()")
                        next_switch = time.perf_counter() + 1.0
                    try:
                        replayed = src.execute("SELECT replay_lsn::text FROM pgcopydb.sentinel").fetchone()
                    except psycopg.errors.UndefinedTable:
                        replayed = None
                    if replayed and replayed[0] and LSN(replayed[0]) >= point:
                        return time.perf_counter() - started
                if time.perf_counter() - started > 3600:
                    raise RuntimeError("pgcopydb did not reach the point within an hour")
                time.sleep(0.05)
    finally:
        for sig in (signal.SIGTERM, signal.SIGKILL):
            if proc.poll() is None:
                os.killpg(proc.pid, sig)
                try:
                    proc.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    pass
        log.close()


def main() -> None:
    settings = {"max_wal_size": "4GB", "shared_buffers": "256MB"}
    with servers(2, settings) as (source, target):
        workdir = source.datadir.parent
        size_bytes = load(source.conninfo())
        print(f"in-sync: source database {size_bytes / 1e6:.0f} MB ({ROWS} rows)")
        with Trickle(source.conninfo()):
            ours_s, parts = ours(source, workdir)
            print(f"in-sync: ours {ours_s:.2f} s (clone {parts['clone']:.2f} s, CDC past the start point "
                  f"{parts['cdc']:.2f} s, clean validation of {parts['rows']} rows {parts['validation']:.2f} s)")
            binary = pgcopydb()
            if binary is None:
                print("in-sync: pgcopydb is not installed: only ours is measured")
                print(f"bench: time to in-sync {size_bytes / 1e6:.0f} MB: ours {ours_s:.4g} s")
                return
            try:
                theirs_s = theirs(binary, source, target, workdir)
            except RuntimeError as exc:
                print(f"in-sync: pgcopydb clone --follow failed: {exc}")
                print(f"bench: time to in-sync {size_bytes / 1e6:.0f} MB: ours {ours_s:.4g} s")
                return
        line(f"time to in-sync {size_bytes / 1e6:.0f} MB", ours_s, "s", "pgcopydb clone --follow", theirs_s)
        shutil.rmtree(workdir / "pgcopydb", ignore_errors=True)


if __name__ == "__main__":
    main()
