"""Validation against the hash floor: the project's chunked comparison of a migrated table against one
serial whole-row-hash scan of each side (``sum(hashtext(r::text))``, the least any whole-row comparison reads).

The table has the issue's columns (bigserial, int, md5 text, numeric, bytea); the target is a
pg_basebackup copy of the source, so the comparison is clean. ``pgcopydb compare data`` is timed too when
the installed pgcopydb has it (Debian's 0.10 does not: it is said so).
"""

from __future__ import annotations

import subprocess
import uuid

import psycopg
from common import FULL, best_of, clone, line, pgcopydb, servers, size

ROWS = size(200_000, 2_000_000)
REPEATS = 3


def load(conninfo: str) -> None:
    with psycopg.connect(conninfo, autocommit=True) as conn:
        conn.execute("CREATE TABLE bench_rows (id bigserial PRIMARY KEY, n int, t text, x numeric, b bytea)")
        conn.execute("INSERT INTO bench_rows (n, t, x, b) SELECT g, md5(g::text), g * 1.25, "
                     "decode(md5(g::text), 'hex') FROM generate_series(1, %s) g", (ROWS,))
        conn.execute("VACUUM ANALYZE bench_rows")


def hash_floor(source: str, target: str) -> float:
    def scan() -> None:
        for conninfo in (source, target):
            with psycopg.connect(conninfo) as conn:
                conn.execute("SELECT sum(hashtext(r::text)) FROM bench_rows AS r").fetchone()
    return best_of(REPEATS, scan)[0]


def ours(source: str, target: str) -> tuple[float, dict]:
    from migration.validation import run_validation

    def one() -> dict:
        with psycopg.connect(source, autocommit=True) as src, psycopg.connect(target, autocommit=True) as tgt:
            return run_validation(src, tgt, schemas=["public"], control_schema="bench_control",
                                  validation_id=f"bench-{uuid.uuid4().hex[:8]}", run_id="bench")
    seconds, result = best_of(REPEATS, one)
    assert result["clean"] and result["rows_compared"] == ROWS, result
    return seconds, result


def main() -> None:
    settings = {"shared_buffers": "512MB" if FULL else "128MB", "max_parallel_workers_per_gather": "0"}
    with servers(1, settings) as made:
        source = made[0]
        load(source.conninfo())
        target = clone(made, source)
        src, tgt = source.conninfo(), target.conninfo()
        hash_floor(src, tgt)  # warm both caches
        floor_s = hash_floor(src, tgt)
        ours_s, result = ours(src, tgt)
        print(f"validation: {ROWS} rows, {result['chunks']} chunks, clean={result['clean']}")
        line(f"validation {ROWS} rows", ours_s, "s", "serial whole-row hash scan of both sides", floor_s)
        binary = pgcopydb()
        help_text = subprocess.run([binary, "help"], capture_output=True, text=True).stdout if binary else ""
        if binary and "compare" in help_text:
            def compare() -> None:
                subprocess.run([binary, "compare", "data", "--source", src, "--target", tgt],
                               check=True, capture_output=True)
            copydb_s = best_of(REPEATS, compare)[0]
            line(f"validation {ROWS} rows vs pgcopydb", ours_s, "s", "pgcopydb compare data", copydb_s)
        else:
            print("validation: pgcopydb compare data not compared: "
                  + ("the installed pgcopydb has no 'compare' command" if binary else "pgcopydb is not installed"))


if __name__ == "__main__":
    main()
