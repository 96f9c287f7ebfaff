"""Sequences set ahead of the fence, then only those that moved since inside the write-blocked window.

The cutover runs as CutoverOperator assembles it (cutover_helpers.native_plan) with SequenceSync on a source
session of its own: presync as a step before the fence, read_moved alongside CDC's last apply and
sync_moved after CDC stops. Between the two, a live writer keeps taking
ids and a step right before the fence moves sequences in every way a sequence moves. Round trips are
counted from libpq's own protocol trace (one ReadyForQuery per round trip). Nothing is stood in: both
servers are real PostgreSQL 15, the target a pg_basebackup clone.
"""

from __future__ import annotations

import os
import tempfile
from contextlib import contextmanager

import pytest
from cutover_helpers import (
    AppWriter,
    Replication,
    can_connect,
    connect,
    ids,
    make_source,
    security_snapshot,
    wait_for,
)
from psycopg import pq

from migration.cutover import CutoverAborted, run_cutover, unblock_run
from migration.fence import restore_role_fence
from migration.native_cdc import subscription_state
from migration.sequences import SequenceSync, read_sequences
from migration.source_quiet import bound_session
from migration.target_prep import enable_triggers

pytestmark = pytest.mark.integration

SEQUENCES = """
CREATE SEQUENCE app.logged_often;
CREATE SEQUENCE app.once;
CREATE SEQUENCE app.set_back START 1 INCREMENT 5;
CREATE SEQUENCE app.untouched;
CREATE SEQUENCE app.countdown INCREMENT -2 START -1 MINVALUE -100000 MAXVALUE -1;
CREATE SEQUENCE app.repositioned;
SELECT setval('app.repositioned', 700, false);
CREATE SEQUENCE app.never_called;
SELECT nextval('app.logged_often'), setval('app.set_back', 500), nextval('app.untouched'), nextval('app.countdown');
"""


@pytest.fixture(scope="module")
def source(pg_servers):
    server = make_source(pg_servers, "seqsrc")
    with connect(server, "appdb") as conn:
        conn.execute(SEQUENCES)
    return server


def states(conn) -> dict[str, tuple]:
    return {s.name: (s.last_value, s.is_called, s.uncalled_value) for s in read_sequences(conn, ["app"])}


@contextmanager
def round_trips(conn):
    """Counts the client/server round trips made inside the block, from libpq's protocol trace."""
    fd, path = tempfile.mkstemp()
    counted = {}
    conn.pgconn.trace(fd)
    conn.pgconn.set_trace_flags(pq.Trace.SUPPRESS_TIMESTAMPS)
    try:
        yield counted
    finally:
        conn.pgconn.untrace()
        os.close(fd)
        with open(path) as trace:
            counted["n"] = sum(1 for line in trace if line.startswith("B\t") and "\tReadyForQuery\t" in line)
        os.unlink(path)


@pytest.mark.safety
def test_a_sequence_moved_between_presync_and_fence_is_never_behind_after_cutover(pg_servers, source):
    repl = Replication(pg_servers, source, "seqmoved")
    writer = AppWriter(source.conninfo("appdb", user="app_rw"))
    writer.start()
    wait_for(lambda: len(writer.written) >= 20, 30, "the writer to get going")
    with connect(source, "postgres") as admin, connect(source, "appdb") as mover, \
            connect(repl.target, "appdb") as tgt:
        src, reader = connect(source, "appdb"), connect(source, "appdb")
        bound_session(reader, lock_timeout_s=2, statement_timeout_s=30, run="seqmoved")
        sync = SequenceSync(reader, tgt, ["app"])
        seen = {}

        def move_after_presync() -> None:
            seen["presynced"] = states(tgt)
            # More than the 32 values a sequence logs ahead (so its WAL moves too), a first call, a value set
            # back, a descending one; app.untouched stays; the writer keeps taking app.items ids.
            mover.execute("SELECT nextval('app.logged_often') FROM generate_series(1, 40)")
            mover.execute("SELECT nextval('app.once'), setval('app.set_back', 20), nextval('app.countdown')")
            # Never called, and still not called at the fence: only its stored value moves.
            mover.execute("SELECT setval('app.never_called', 900, false)")
            written = len(writer.written)
            wait_for(lambda: len(writer.written) > written, 10, "the writer to take an id after the presync")

        plan = repl.plan(src, tgt, "seqmoved", fence_args={"roles": ["app_group"]},
                         before_fence=[("presync_sequences", sync.presync), ("move_sequences", move_after_presync)],
                         alongside_cdc=[("read_sequences", sync.read_moved)],
                         after_stop=[("sync_sequences", sync.sync_moved),
                                     ("enable_triggers", lambda: enable_triggers(tgt, repl.enable_ddl))])
        for part in (plan.fence, plan.drain, plan.proof):  # the reader is the cutover's own, as the operator's
            part.keep_pids = [*part.keep_pids, reader.info.backend_pid]
        timeline = run_cutover(plan)
        writer.stop()
        assert timeline["status"] == "completed"
        assert ids(src) == ids(tgt) and set(writer.written) <= set(ids(tgt))

        source_now, target_now = states(src), states(tgt)
        assert source_now == target_now
        # Ahead of the fence the target got the source's state then; the moved ones were set in the window.
        moved = {name for name in source_now if seen["presynced"][name] != source_now[name]}
        assert moved >= {"logged_often", "once", "set_back", "countdown", "items_id_seq", "never_called"}
        assert "untouched" not in moved
        details = {s["step"]: s["detail"] for s in timeline["steps"]}
        assert details["read_sequences"] == {"checked": len(source_now), "moved": len(moved)}
        assert details["sync_sequences"] == {"checked": len(source_now), "set": len(moved)}
        steps = [s["step"] for s in timeline["steps"]]
        assert steps.index("drain_source") < steps.index("read_sequences") < steps.index("sync_sequences")
        # The target goes on where the source stopped: never a value the source already handed out.
        next_id = tgt.execute("SELECT nextval('app.items_id_seq')").fetchone()[0]
        assert next_id > max(ids(src))
        assert tgt.execute("SELECT nextval('app.logged_often'), nextval('app.set_back'), nextval('app.once'), "
                           "nextval('app.countdown'), nextval('app.repositioned'), nextval('app.never_called')"
                           ).fetchone() == (42, 25, 2, -5, 700, 900)
        src.close()
        reader.close()
        unblock_run(repl.plan(admin, tgt, "seqmoved").journal, lambda r: restore_role_fence(admin, r), force=True)
    repl.drop_slot()


def test_inside_the_window_one_statement_per_side_and_none_on_the_target_when_nothing_moved(pg_servers, source):
    target = pg_servers.clone(source, "seqclone")
    with connect(source, "appdb") as src, connect(target, "appdb") as tgt, connect(source, "appdb") as second:
        # The never-called sequences' stored values are read on a second session, at the same time.
        sync = SequenceSync(src, tgt, ["app"], uncalled_conn=second)
        assert sync.presync() == {"sequences": len(states(src))}
        assert states(tgt) == states(src)
        count = len(states(src))
        with round_trips(src) as on_source, round_trips(tgt) as on_target, round_trips(second) as on_second:
            assert sync.sync_moved() == {"checked": count, "set": 0}
        assert (on_source["n"], on_second["n"], on_target["n"]) == (1, 1, 0)

        src.execute("SELECT nextval('app.untouched'), nextval('app.once')")
        # Read on its own (as alongside CDC's apply), then set: the read is not repeated.
        with round_trips(src) as on_source:
            assert sync.read_moved() == {"checked": count, "moved": 2}
        with round_trips(src) as on_source, round_trips(tgt) as on_target:
            assert sync.sync_moved() == {"checked": count, "set": 2}
        assert (on_source["n"], on_target["n"]) == (0, 1)
        src.execute("SELECT nextval('app.untouched'), nextval('app.once')")
        # A sequence created on both sides after the presync is set too.
        for conn in (src, tgt):
            conn.execute("CREATE SEQUENCE app.created_later")
        src.execute("SELECT setval('app.created_later', 77)")
        with round_trips(src) as on_source, round_trips(tgt) as on_target:
            assert sync.sync_moved()["set"] == 3
        assert (on_source["n"], on_target["n"]) == (1, 1)
        assert states(tgt) == states(src)
        for conn in (src, tgt):
            conn.execute("DROP SEQUENCE app.created_later")


def test_without_a_presync_every_sequence_is_set(pg_servers, source):
    target = pg_servers.clone(source, "seqclone")
    with connect(source, "appdb") as src, connect(target, "appdb") as tgt:
        src.execute("SELECT nextval('app.untouched')")
        sync = SequenceSync(src, tgt, ["app"])
        assert sync.sync_moved() == {"checked": None, "set": len(states(src))}
        assert states(tgt) == states(src)
        with pytest.raises(ValueError, match="^schemas: "):
            SequenceSync(src, tgt, "app")


@pytest.mark.safety
def test_a_read_alongside_cdc_that_fails_aborts_the_cutover_and_restores_writes(pg_servers, source):
    repl = Replication(pg_servers, source, "seqfail")
    writer = AppWriter(source.conninfo("appdb", user="app_rw"))
    writer.start()
    wait_for(lambda: len(writer.written) >= 20, 30, "the writer to get going")
    with connect(source, "postgres") as admin, connect(repl.target, "appdb") as tgt:
        before = security_snapshot(admin)
        src, reader = connect(source, "appdb"), connect(source, "appdb")
        bound_session(reader, lock_timeout_s=2, statement_timeout_s=30, run="seqfail")
        sync = SequenceSync(reader, tgt, ["app"])

        def failing_read():
            reader.execute("SELECT pg_sleep(0.2)")
            raise RuntimeError("the sequences could not be read")

        plan = repl.plan(src, tgt, "seqfail", fence_args={"roles": ["app_group"]},
                         before_fence=[("presync_sequences", sync.presync)],
                         alongside_cdc=[("read_sequences", failing_read)],
                         after_stop=[("sync_sequences", sync.sync_moved),
                                     ("enable_triggers", lambda: enable_triggers(tgt, repl.enable_ddl))])
        for part in (plan.fence, plan.drain, plan.proof):
            part.keep_pids = [*part.keep_pids, reader.info.backend_pid]
        with pytest.raises(CutoverAborted, match="could not be read") as aborted:
            run_cutover(plan)
        assert aborted.value.failed_step == "read_sequences"
        steps = {s["step"]: s["ok"] for s in aborted.value.timeline["steps"]}
        assert steps["stop_cdc"] and steps["resume_cdc"] and steps["restore_writes"] and not steps["read_sequences"]
        assert "sync_sequences" not in steps
        # Writes are back exactly as they were, CDC applies again, and the writer's rows reach the target.
        assert security_snapshot(admin) == before and can_connect(source, "appdb", "app_rw")
        assert subscription_state(tgt, repl.subscription)["enabled"]
        count = len(writer.written)
        wait_for(lambda: len(writer.written) > count + 10, 30, "the writer to write again")
        writer.stop()
        wait_for(lambda: set(writer.written) <= set(ids(tgt)), 30, "CDC to carry the writer's rows")
        state = plan.journal.read()
        assert state.step("read_sequences") == "failed" and state.outcome["state"] == "aborted"
        src.close()
        reader.close()
    repl.drop_slot()
