"""Finding the CDC start LSN: resolve_start_lsn decodes up to just past the start, not the slot's backlog.

A slot is created, then a backlog of changes follows (large and single-row transactions mixed); the clone
point is taken once 1% of it is written and once 99% is. For each, resolve_start_lsn is timed against one
peek over the whole slot (what a resolver that reads the backlog would cost). Both count on the server,
so only one row travels: the client's peak memory is printed to show it stays flat.

Quick size by default (100,000 changes); BENCH_SIZE=full for 1,000,000. Run: `make bench`. It prints one
line per comparison and never fails on time.
"""

from __future__ import annotations

import os
import resource
import shutil
import sys
import time
from pathlib import Path

import psycopg

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "plugins"))

from migration.localpg import LocalServer, find_bindir, free_port, make_workdir  # noqa: E402
from migration.slots import create_slot, resolve_start_lsn  # noqa: E402

SIZES = {"quick": 100_000, "full": 1_000_000}
BATCH = 10_000  # rows of one large transaction; each large one is followed by as many single-row ones / 10
REPEATS = 5
POSITIONS = (0.01, 0.99)


def best_of(calls: dict[str, object]) -> dict[str, tuple[float, object]]:
    """Best time and result of each call, the calls taken in turn REPEATS times (a busy machine slows
    them alike, and none gets a page cache the others did not)."""
    best: dict[str, tuple[float, object]] = {}
    for _ in range(REPEATS):
        for name, call in calls.items():
            started = time.perf_counter()
            result = call()
            elapsed = time.perf_counter() - started
            if name not in best or elapsed < best[name][0]:
                best[name] = (elapsed, result)
    return best


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def write_changes(conn: psycopg.Connection, count: int) -> None:
    """``count`` changes: 90% in large transactions, 10% in single-row transactions."""
    written = 0
    while written < count:
        big = min(BATCH, count - written)
        conn.execute("INSERT INTO t (v) SELECT 'backlog ' || g FROM generate_series(1, %s) g", (big,))
        written += big
        small = min(BATCH // 10, count - written)
        if small > 0:
            conn.execute(f"DO $$ BEGIN FOR i IN 1..{int(small)} LOOP INSERT INTO t (v) VALUES ('tx'); COMMIT; "
                         "END LOOP; END $$")
            written += small


def main() -> None:
    size = os.environ.get("BENCH_SIZE", "quick")
    if size not in SIZES:
        raise SystemExit(f"BENCH_SIZE: expected one of {sorted(SIZES)}, got {size!r}")
    changes = SIZES[size]
    workdir = make_workdir("pgmig-bench-")
    server = LocalServer(datadir=workdir / "src", port=free_port(), bindir=find_bindir())
    try:
        server.init({"synchronous_commit": "on", "max_wal_size": "4GB"}).start()
        with psycopg.connect(server.conninfo(), autocommit=True) as conn:
            conn.execute("CREATE TABLE t (id bigserial PRIMARY KEY, v text)")
            create_slot(conn, "bench_slot", "test_decoding", wait_for_xacts_s=10)
            captured = {}
            done = 0
            for position in POSITIONS:
                upto = int(changes * position)
                write_changes(conn, upto - done)
                done = upto
                captured[position] = conn.execute("SELECT pg_current_wal_lsn()::text").fetchone()[0]
            write_changes(conn, changes - done)
            rss_before = peak_rss_mb()
            calls = {"whole": lambda: conn.execute(
                "SELECT count(*) FROM pg_logical_slot_peek_changes('bench_slot', NULL, NULL)").fetchone()[0]}
            calls.update({p: (lambda p=p: resolve_start_lsn(conn, "bench_slot", captured[p])) for p in POSITIONS})
            best = best_of(calls)
            whole_s, whole = best["whole"]
            for position in POSITIONS:
                ours_s, ours = best[position]
                print(f"bench: start LSN at {position:.0%} of {changes:,} changes: ours {ours_s:.3f} s "
                      f"({ours['decoded_changes']:,} rows decoded); whole-slot peek {whole_s:.3f} s ({whole:,} rows "
                      f"decoded); ratio {whole_s / ours_s:.2f}x", flush=True)
            print(f"bench: start LSN client memory: peak RSS {peak_rss_mb():.0f} MB after the decodes, "
                  f"{rss_before:.0f} MB before (only a count leaves the server)", flush=True)
    finally:
        server.stop(mode="immediate")
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
