"""Finding the CDC start LSN: resolve_start_lsn decodes up to just past the start, not the slot's backlog.

A slot is created, the clone point is taken early, then a backlog of transactions follows. The
resolve is timed against one peek over the whole slot; the ratio shows what stopping at the start
saves. Run: `make bench`.
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


def measure(call) -> tuple[float, object]:
    best, result = float("inf"), None
    for _ in range(REPEATS):
        started = time.perf_counter()
        result = call()
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
            resolved_s, resolved = measure(lambda: resolve_start_lsn(conn, "bench_slot", captured))
            whole_s, whole = measure(lambda: conn.execute(
                "SELECT count(*) FROM pg_logical_slot_peek_changes('bench_slot', NULL, NULL)").fetchone()[0])
        print(f"start LSN {resolved['start_lsn']} (captured {captured}), backlog of about {BACKLOG_TRANSACTIONS * 2} rows")
        print(f"resolve_start_lsn: {resolved['decoded_changes']:>8} rows decoded, {resolved_s * 1000:8.1f} ms")
        print(f"whole slot:        {whole:>8} rows decoded, {whole_s * 1000:8.1f} ms")
        print(f"ratio whole/resolve: rows {whole / max(resolved['decoded_changes'], 1):.0f}x, "
              f"time {whole_s / resolved_s:.1f}x")
    finally:
        server.stop(mode="immediate")
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
