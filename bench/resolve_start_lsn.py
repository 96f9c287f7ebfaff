"""Finding the CDC start LSN: the doubling peek window against one peek over the whole slot.

A slot is created, the clone point is taken early, then a backlog of transactions follows. Both
ways must give the same start LSN; the ratio shows what the window saves. Run: `make bench`.
"""

from __future__ import annotations

import shutil
import sys
import time
from pathlib import Path

import psycopg

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "plugins"))

from migration.localpg import LocalServer, find_bindir, free_port, make_workdir  # noqa: E402
from migration.slots import create_slot, resolve_start_lsn  # noqa: E402

BACKLOG_TRANSACTIONS = 20_000
REPEATS = 3


def measure(conn: psycopg.Connection, captured: str, window: int) -> tuple[float, dict]:
    best, result = float("inf"), {}
    for _ in range(REPEATS):
        started = time.perf_counter()
        result = resolve_start_lsn(conn, "bench_slot", captured, initial_window=window)
        best = min(best, time.perf_counter() - started)
    return best, result


def main() -> None:
    workdir = make_workdir("pgmig-bench-")
    server = LocalServer(datadir=workdir / "src", port=free_port(), bindir=find_bindir())
    try:
        server.init({"synchronous_commit": "on"}).start()
        with psycopg.connect(server.conninfo(), autocommit=True) as conn:
            conn.execute("CREATE TABLE t (id bigserial PRIMARY KEY, v text)")
            create_slot(conn, "bench_slot", "test_decoding", wait_for_xacts_s=10)
            conn.execute("INSERT INTO t (v) VALUES ('before the clone point')")
            captured = conn.execute("SELECT pg_current_wal_lsn()::text").fetchone()[0]
            conn.execute("INSERT INTO t (v) VALUES ('first change the clone lacks')")
            for _ in range(BACKLOG_TRANSACTIONS // 1000):
                conn.execute("INSERT INTO t (v) SELECT 'backlog ' || g FROM generate_series(1, 1000) g")
                conn.execute("DO $$ BEGIN FOR i IN 1..1000 LOOP INSERT INTO t (v) VALUES ('tx'); END LOOP; END $$")
            windowed_s, windowed = measure(conn, captured, 64 * 1024)
            whole_s, whole = measure(conn, captured, 2**62)
        assert windowed["start_lsn"] == whole["start_lsn"], (windowed, whole)
        print(f"start LSN {windowed['start_lsn']} (captured {captured}), backlog of about {BACKLOG_TRANSACTIONS * 2} rows")
        print(f"doubling window: {windowed['decoded_changes']:>8} rows decoded, {windowed_s * 1000:8.1f} ms")
        print(f"whole slot:      {whole['decoded_changes']:>8} rows decoded, {whole_s * 1000:8.1f} ms")
        print(f"ratio whole/window: rows {whole['decoded_changes'] / max(windowed['decoded_changes'], 1):.0f}x, "
              f"time {whole_s / windowed_s:.1f}x")
    finally:
        server.stop(mode="immediate")
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
