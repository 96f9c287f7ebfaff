"""The write-blocked window at scale, against a per-object baseline, and what synchronous apply costs.

Window: a source with N tables (a bigserial key and an insert trigger each) and M sequences in all is
cloned with pg_basebackup; native CDC runs into the clone while a writer (about 300 transactions/s, as
the application role) inserts into random tables and takes values of random sequences. The cutover's
critical section then runs as CutoverOperator assembles it for native CDC (ahead of the fence: drift
check, sequence presync, triggers enabled; in the window: role fence, drain, drift re-check, CDC applied,
stop, sequences, proof, open), on the project's own code.

Per-object baseline, measured in the same run on the same servers once the target is open: the sequence
step as one setval round trip per sequence (after the same one-query read of the source) and the trigger
step as one ENABLE TRIGGER round trip per trigger (the triggers disabled again first), both in the
window as the runbook does them. Baseline window = our window - our sequence step + those per-object steps.

Apply throughput: a backlog of single-row transactions is applied by a subscription with
synchronous_commit off (how CDC runs until the cutover switches it on just before the fence) and on,
with fsync=on on both servers.

Quick size by default (100 tables, 1,000 sequences); BENCH_SIZE=full for 1,000 tables, 10,000 sequences.
Prints one line per comparison and never fails on time. Run: PYTHONPATH=plugins:dags python bench/window.py
"""

from __future__ import annotations

import os
import random
import shutil
import statistics
import sys
import threading
import time
from pathlib import Path

import psycopg
from psycopg import sql

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "plugins"))

from migration.cutover import CutoverPlan, LocalTargetOpener, NativeCdc, NativeCdcDatabase, run_cutover  # noqa: E402
from migration.drift import SourceSchemaWatch  # noqa: E402
from migration.fence import RoleFence  # noqa: E402
from migration.journal import CutoverJournal  # noqa: E402
from migration.localpg import LocalServer, find_bindir, free_port, make_workdir  # noqa: E402
from migration.lsn import find_redo_done  # noqa: E402
from migration.native_cdc import advance_origin, create_publication, create_subscription  # noqa: E402
from migration.sequences import SequenceSync, read_sequences  # noqa: E402
from migration.source_quiet import ChangesAfterFinalLsn, SlotCheck, SourceDrain, bound_session  # noqa: E402
from migration.target_prep import disable_user_triggers, enable_triggers  # noqa: E402

SIZES = {"quick": (100, 1_000), "full": (1_000, 10_000)}
SERVER_SETTINGS = {"shared_buffers": "256MB"}
APPLY_TRANSACTIONS = {"quick": 3_000, "full": 10_000}
DB, SCHEMA, CONTROL, APP = "app", "bench", "migration_control", "app_writer"
SLOT, PUBLICATION, SUBSCRIPTION = "bench_slot", "bench_pub", "bench_sub"


def connect(server: LocalServer, dbname: str = DB, user: str = "postgres") -> psycopg.Connection:
    return psycopg.connect(server.conninfo(dbname, user=user), autocommit=True)


def create_source(server: LocalServer, tables: int, sequences: int) -> None:
    with connect(server, "postgres") as conn:
        conn.execute(f"CREATE DATABASE {DB}")
        conn.execute(f"CREATE ROLE {APP} LOGIN")
    with connect(server) as conn:
        conn.execute(f"CREATE SCHEMA {SCHEMA}")
        conn.execute(f"""CREATE FUNCTION {SCHEMA}.touch() RETURNS trigger LANGUAGE plpgsql AS
                         $$ BEGIN NEW.v := coalesce(NEW.v, 0) + 1; RETURN NEW; END $$""")
        conn.execute(f"""DO $$ BEGIN FOR i IN 1..{tables} LOOP
            EXECUTE format('CREATE TABLE {SCHEMA}.t%s (id bigserial PRIMARY KEY, v int)', i);
            EXECUTE format('CREATE TRIGGER touch BEFORE INSERT ON {SCHEMA}.t%s
                            FOR EACH ROW EXECUTE FUNCTION {SCHEMA}.touch()', i);
            EXECUTE format('INSERT INTO {SCHEMA}.t%s (v) SELECT g FROM generate_series(1, 10) g', i);
        END LOOP; END $$""")
        conn.execute(f"""DO $$ BEGIN FOR i IN 1..{sequences - tables} LOOP
            EXECUTE format('CREATE SEQUENCE {SCHEMA}.s%s', i);
        END LOOP; END $$""")
        conn.execute(f"SELECT nextval(c.oid) FROM pg_class c WHERE c.relkind = 'S' AND c.relname LIKE 's%' "
                     f"AND c.relnamespace = '{SCHEMA}'::regnamespace AND random() < 0.5")
        conn.execute(f"GRANT USAGE ON SCHEMA {SCHEMA} TO {APP}; "
                     f"GRANT SELECT, INSERT ON ALL TABLES IN SCHEMA {SCHEMA} TO {APP}; "
                     f"GRANT USAGE ON ALL SEQUENCES IN SCHEMA {SCHEMA} TO {APP}")


class Writer(threading.Thread):
    """The application: a transaction every ~3 ms into a random table, now and then a sequence value."""

    def __init__(self, conninfo: str, tables: int, sequences: int):
        super().__init__(daemon=True)
        self.conninfo, self.tables, self.standalone = conninfo, tables, sequences - tables
        self.stop_event = threading.Event()
        self.committed = 0
        self.failures = 0

    def run(self) -> None:
        rng = random.Random(7)
        conn = None
        while not self.stop_event.is_set():
            try:
                if conn is None:
                    conn = psycopg.connect(self.conninfo, autocommit=True, connect_timeout=2)
                with conn.transaction():
                    conn.execute(sql.SQL("INSERT INTO {} (v) VALUES (1)").format(
                        sql.Identifier(SCHEMA, f"t{rng.randint(1, self.tables)}")))
                    if self.standalone and rng.random() < 0.3:
                        conn.execute("SELECT nextval(%s::regclass)", (f"{SCHEMA}.s{rng.randint(1, self.standalone)}",))
                self.committed += 1
                time.sleep(0.003)
            except psycopg.Error:
                self.failures += 1
                if conn is not None:
                    conn.close()
                conn = None
                time.sleep(0.05)
        if conn is not None:
            conn.close()

    def stop(self) -> None:
        self.stop_event.set()
        self.join(30)


def wait_caught_up(source: LocalServer, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    with connect(source) as conn:
        while conn.execute("SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), confirmed_flush_lsn) FROM "
                           "pg_replication_slots WHERE slot_name = %s", (SLOT,)).fetchone()[0] > 1_000_000:
            if time.monotonic() > deadline:
                raise RuntimeError("CDC did not catch up")
            time.sleep(0.2)


def plan_for(src, readers, tgt, target: LocalServer, enable_ddl: str) -> CutoverPlan:
    """The critical section as CutoverOperator assembles it for one database with native CDC (``readers``:
    the sequences' two sessions)."""
    for conn in (src, *readers, tgt):
        bound_session(conn, lock_timeout_s=2, statement_timeout_s=60, run="bench")
    journal = CutoverJournal(conn=tgt, control_schema=CONTROL, migration_id="bench", run_id="bench").ensure()
    keep = [src.info.backend_pid, *(reader.info.backend_pid for reader in readers)]
    sync = SequenceSync(readers[0], tgt, [SCHEMA], uncalled_conn=readers[1])
    watch = SourceSchemaWatch(src, tgt, [SCHEMA], database=DB)
    return CutoverPlan(
        journal=journal,
        fence=RoleFence(conn=src, journal=journal, databases=[DB], replication_role="postgres", roles=[APP],
                        keep_pids=keep),
        drain=SourceDrain(conn=src, databases=[DB], keep_pids=keep),
        cdc=NativeCdc(source_conn=src, links=[NativeCdcDatabase(DB, SLOT, SUBSCRIPTION, tgt)]),
        proof=ChangesAfterFinalLsn(checks=[SlotCheck(DB, src, SLOT, "pgoutput", PUBLICATION)], databases=[DB],
                                   keep_pids=keep),
        opener=LocalTargetOpener(endpoint={"port": target.port, "databases": [DB]}), databases=[DB],
        before_fence=[(f"check_schema_drift_ahead[{DB}]", watch.ahead), (f"presync_sequences[{DB}]", sync.presync),
                      (f"enable_triggers[{DB}]", lambda: enable_triggers(tgt, enable_ddl))],
        alongside_cdc=[(f"read_sequences[{DB}]", sync.read_moved)],
        after_drain=[(f"check_schema_drift[{DB}]", watch.recheck)],
        after_stop=[(f"sync_sequences[{DB}]", sync.sync_moved)],
        drain_timeout_s=60, max_write_block_s=60, resume_hint=NativeCdc.resume_hint())


def per_object_steps(src, tgt, enable_ddl: str) -> tuple[float, float]:
    """Seconds for the sequence step (the one-query read, then one setval round trip per sequence) and the
    trigger step (one ENABLE TRIGGER round trip per trigger), on the same servers."""
    started = time.perf_counter()
    seqs = read_sequences(src, [SCHEMA])
    for seq in seqs:
        value, called = seq.setval_args
        tgt.execute("SELECT setval(%s::regclass, %s, %s)",
                    (sql.Identifier(seq.schema, seq.name).as_string(tgt), value, called))
    sequences_s = time.perf_counter() - started
    statements = [s for s in enable_ddl.split(";") if s.strip()]
    tgt.execute(enable_ddl.replace(" ENABLE TRIGGER ", " DISABLE TRIGGER "))
    started = time.perf_counter()
    for statement in statements:
        tgt.execute(statement)
    return sequences_s, time.perf_counter() - started


def window(bindir: Path, workdir: Path, tables: int, sequences: int) -> None:
    # Buffers for every sequence and table (the clone copies the setting): a sequence read ahead of the
    # fence is still cached inside the window, as on a server sized for its data, not re-read from disk.
    source = LocalServer(datadir=workdir / "src", port=free_port(), bindir=bindir).init(SERVER_SETTINGS).start()
    servers = [source]
    try:
        create_source(source, tables, sequences)
        with connect(source) as conn:
            create_publication(conn, PUBLICATION, [SCHEMA])
            conn.execute("SELECT pg_create_logical_replication_slot(%s, 'pgoutput')", (SLOT,))
        target = LocalServer.basebackup(source.conninfo(), workdir / "clone", free_port(), bindir).start()
        servers.append(target)
        with connect(target) as tgt:
            enable_ddl = disable_user_triggers(tgt, [SCHEMA], control_schema=CONTROL)
            create_subscription(tgt, SUBSCRIPTION, source.conninfo(DB), PUBLICATION, SLOT)
            advance_origin(tgt, SUBSCRIPTION, find_redo_done(target.log_text()))
        writer = Writer(source.conninfo(DB, user=APP), tables, sequences)
        writer.start()
        time.sleep(3)
        wait_caught_up(source)
        with connect(source) as src, connect(source) as reader, connect(source) as second, connect(target) as tgt:
            timeline = run_cutover(plan_for(src, (reader, second), tgt, target, enable_ddl))
            writer.stop()
            ours = timeline["write_blocked_seconds"]
            steps = timeline["durations"]
            po_sequences, po_triggers = per_object_steps(src, tgt, enable_ddl)
        # Our trigger step runs ahead of the fence (native CDC); the baseline's runs in the window.
        baseline = ours - steps[f"sync_sequences[{DB}]"] + po_sequences + po_triggers
        in_window = ("block_writes", "drain_source", f"check_schema_drift[{DB}]", "cdc_applied", "stop_cdc",
                     f"sync_sequences[{DB}]", "prove_source_quiet", "open_target")
        detail = ", ".join(f"{name} {steps[name] * 1000:.1f}" for name in in_window)
        journal_ms = (ours - sum(steps[name] for name in in_window)) * 1000
        detail += f"; read_sequences[{DB}] {steps[f'read_sequences[{DB}]'] * 1000:.1f} alongside those after the drain"
        print(f"bench: write-blocked window {tables} tables {sequences} sequences: ours {ours:.3f} s; "
              f"per-object baseline {baseline:.3f} s; ratio {baseline / ours:.1f}x", flush=True)
        ahead = {name: steps[f"{name}[{DB}]"] * 1000 for name in ("check_schema_drift_ahead", "presync_sequences",
                                                                "enable_triggers")}
        print(f"  steps (ms): {detail}; journal, waits and gaps {journal_ms:.1f}; ahead of the fence: drift check "
              f"{ahead['check_schema_drift_ahead']:.1f}, presync {ahead['presync_sequences']:.1f}, "
              f"triggers {ahead['enable_triggers']:.1f}; per-object sequences {po_sequences * 1000:.1f}, "
              f"per-object triggers {po_triggers * 1000:.1f}; sequences set in the window "
              f"{timeline['steps'][[s['step'] for s in timeline['steps']].index(f'sync_sequences[{DB}]')]['detail']}; "
              f"writer {writer.committed} transactions", flush=True)
    finally:
        for server in reversed(servers):
            server.stop(mode="immediate")


def apply_rate(bindir: Path, workdir: Path, transactions: int, synchronous_commit: str, run: int) -> float:
    """Transactions/s the subscription applies from a backlog of single-row transactions (fsync=on)."""
    settings = {"fsync": "on", "synchronous_commit": "on"}
    name = f"apply_{synchronous_commit}_{run}"
    source = LocalServer(datadir=workdir / f"{name}_src", port=free_port(), bindir=bindir).init(settings).start()
    target = LocalServer(datadir=workdir / f"{name}_dst", port=free_port(), bindir=bindir).init(settings).start()
    try:
        for server in (source, target):
            with connect(server, "postgres") as conn:
                conn.execute("CREATE TABLE t (id bigint PRIMARY KEY, v text)")
        with connect(source, "postgres") as src, connect(target, "postgres") as tgt:
            src.execute("CREATE PUBLICATION p FOR TABLE t")
            tgt.execute(sql.SQL("CREATE SUBSCRIPTION s CONNECTION {} PUBLICATION p WITH (copy_data = false, "
                                "enabled = false, synchronous_commit = {})").format(
                sql.Literal(source.conninfo("postgres")), sql.Literal(synchronous_commit)))
            src.execute(f"DO $$ BEGIN FOR i IN 1..{transactions} LOOP INSERT INTO t VALUES (i, 'x'); COMMIT; "
                        "END LOOP; END $$")
            end = src.execute("SELECT pg_current_wal_lsn()").fetchone()[0]
            started = time.perf_counter()
            tgt.execute("ALTER SUBSCRIPTION s ENABLE")
            while tgt.execute("SELECT count(*) FROM t").fetchone()[0] < transactions:
                time.sleep(0.01)
            elapsed = time.perf_counter() - started
            while src.execute("SELECT confirmed_flush_lsn < %s FROM pg_replication_slots WHERE slot_name = 's'",
                              (end,)).fetchone()[0]:
                time.sleep(0.01)
            tgt.execute("ALTER SUBSCRIPTION s DISABLE")
        return transactions / elapsed
    finally:
        target.stop(mode="immediate")
        source.stop(mode="immediate")
        for server in (source, target):
            shutil.rmtree(server.datadir, ignore_errors=True)


def main() -> None:
    size = os.environ.get("BENCH_SIZE", "quick")
    if size not in SIZES:
        raise SystemExit(f"BENCH_SIZE: expected one of {sorted(SIZES)}, got {size!r}")
    bindir = find_bindir()
    workdir = make_workdir("pgmig-bench-window-")
    try:
        window(bindir, workdir, *SIZES[size])
        count = APPLY_TRANSACTIONS[size]
        off = statistics.median(apply_rate(bindir, workdir, count, "off", run) for run in range(3))
        on = statistics.median(apply_rate(bindir, workdir, count, "on", run) for run in range(3))
        print(f"bench: CDC apply throughput, fsync=on, {count} single-row transactions: ours (synchronous_commit "
              f"off until just before the fence) {off:.0f} tx/s; synchronous_commit on {on:.0f} tx/s; "
              f"ratio {off / on:.2f}x", flush=True)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
