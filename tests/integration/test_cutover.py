"""The cutover's critical section on real servers: the role fence, the drain, the proof, the journal and
the abort path.

An application writer keeps writing (and turns default_transaction_read_only off on every new
session) while the source is fenced; the tests check it cannot write, that every write it saw
acknowledged reaches the target, and that after an abort it can write again. Sequence sync and
trigger enabling are the project's own migration.sequences and migration.target_prep functions.
Nothing is stood in: both servers are real PostgreSQL 15, the target a pg_basebackup clone.
"""

from __future__ import annotations

import time

import psycopg
import pytest
from cutover_helpers import (
    DATABASES,
    AppWriter,
    Replication,
    can_connect,
    connect,
    ids,
    journal_for,
    make_source,
    role_fence,
    security_snapshot,
    wait_for,
)

from migration.cutover import CutoverAborted, CutoverError, run_cutover, unblock_run
from migration.drift import SourceSchemaWatch
from migration.fence import restore_role_fence
from migration.native_cdc import subscription_state
from migration.source_quiet import SourceDrain, bound_session

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def source(pg_servers):
    return make_source(pg_servers)


@pytest.mark.safety
def test_fence_covers_every_member_of_a_group_role_in_the_migrated_databases_only(source):
    with connect(source, "appdb") as admin, connect(source, "postgres") as journal_conn:
        before = security_snapshot(admin)
        sessions = {user: connect(source, "appdb", user=user) for user in ("app_rw", "app_nested", "monitor")}
        journal = journal_for(journal_conn)
        fence = role_fence(admin, journal)
        assert fence.prepare()["roles"] == ["App Reader", "app_group", "app_nested", "app_rw", "app_sub"]
        fence.block()

        # Every client session on the migrated databases is gone (members' and an unlisted login's alike).
        for user, session in sessions.items():
            with pytest.raises(psycopg.OperationalError):
                session.execute("INSERT INTO app.items (v) VALUES (%s)", (user,))
            session.close()
        # Members, direct or nested, can no longer connect to the migrated databases...
        for user in ("app_rw", "app_nested"):
            for db in DATABASES:
                assert not can_connect(source, db, user)
        # ...and if CONNECT came back by hand, their sessions there would still start read-only.
        admin.execute("GRANT CONNECT ON DATABASE appdb TO app_nested")
        with connect(source, "appdb", user="app_nested") as back:
            assert back.execute("SHOW default_transaction_read_only").fetchone()[0] == "on"
        admin.execute("REVOKE CONNECT ON DATABASE appdb FROM app_nested")
        # Databases that are not migrated are not touched.
        with connect(source, "postgres", user="app_rw") as elsewhere:
            assert elsewhere.execute("SHOW default_transaction_read_only").fetchone()[0] == "off"
        # The kept roles still get in.
        for user in ("repl", "monitor"):
            assert all(can_connect(source, db, user) for db in DATABASES)
        # ...and the kept logins other than the replication role start read-only there.
        with connect(source, "appdb", user="monitor") as kept:
            assert kept.execute("SHOW default_transaction_read_only").fetchone()[0] == "on"
        with connect(source, "appdb", user="repl") as kept:
            assert kept.execute("SHOW default_transaction_read_only").fetchone()[0] == "off"

        # A rerun while fenced keeps the first record of each change (the real previous state).
        recorded = journal.read().fence_records
        assert {"kind": "role_read_only", "object": '["App Reader", "appdb"]',
                "previous": {"role": "App Reader", "database": "appdb", "value": "off"}} in recorded
        fence.block()
        assert journal.read().fence_records == recorded

        assert fence.unblock()["restored"]
        assert security_snapshot(admin) == before
        assert fence.unblock()["restored"] == []
        assert security_snapshot(admin) == before
    with connect(source, "appdb", user="app_nested") as app:
        app.execute("INSERT INTO app.items (v) VALUES ('after')")


def test_bad_names_fail_before_anything_changes(source):
    with connect(source, "appdb") as admin, connect(source, "postgres") as journal_conn:
        before = security_snapshot(admin)
        journal = journal_for(journal_conn, "run_bad")
        with pytest.raises(CutoverError, match="nobody"):
            role_fence(admin, journal, roles=["app_rw", "nobody"]).prepare()
        with pytest.raises(CutoverError, match="cannot be fenced"):
            role_fence(admin, journal, roles=["repl"]).prepare()
        with pytest.raises(CutoverError, match="members of the fenced roles"):
            role_fence(admin, journal, roles=["app_group"], exclude_roles=["app_nested"]).prepare()
        with pytest.raises(CutoverError, match="replication_role"):
            role_fence(admin, journal, replication_role="no_such_role").prepare()
        with pytest.raises(CutoverError, match="databases"):
            role_fence(admin, journal, databases=["nodb"]).prepare()
        with pytest.raises(ValueError, match="databases"):
            role_fence(admin, journal, databases=[])
        assert security_snapshot(admin) == before
        assert journal.read().entries == {}


@pytest.mark.safety
def test_drain_ends_every_session_but_the_cutovers_own_whatever_the_login(source):
    with connect(source, "appdb") as admin:
        kept = connect(source, "Other DB")
        # An application logged in as the migration's own login, and one as a login no fence lists.
        own_login = connect(source, "appdb")
        unlisted = connect(source, "Other DB", user="monitor")
        elsewhere = connect(source, "postgres", user="monitor")
        drain = SourceDrain(conn=admin, databases=DATABASES, keep_pids=[kept.info.backend_pid])
        first = drain.drain(5)
        for conn in (own_login, unlisted):
            with pytest.raises(psycopg.OperationalError):
                conn.execute("SELECT 1")
        assert kept.execute("SELECT 1").fetchone()[0] == 1
        assert elsewhere.execute("SELECT 1").fetchone()[0] == 1
        assert {(s["role"], s["database"]) for s in drain.ended} >= {("postgres", "appdb"), ("monitor", "Other DB")}
        assert first <= drain.drain(5)

        # A prepared transaction survives every session; the drain names it instead of waiting forever.
        with connect(source, "appdb") as other:
            other.execute("BEGIN")
            other.execute("INSERT INTO app.items (v) VALUES ('prepared')")
            other.execute("PREPARE TRANSACTION 'held_by_someone'")
        with pytest.raises(CutoverError, match="held_by_someone"):
            drain.drain(0.3)
        admin.execute("ROLLBACK PREPARED 'held_by_someone'")
        drain.drain(5)
        for conn in (own_login, unlisted, kept, elsewhere):
            conn.close()


@pytest.mark.safety
def test_cutover_with_a_writer_that_logs_in_through_a_member_of_the_fenced_group(pg_servers, source):
    repl = Replication(pg_servers, source, "ok")
    writer = AppWriter(source.conninfo("appdb", user="app_nested"))
    writer.start()
    wait_for(lambda: len(writer.written) >= 50, 30, "the writer to get going")
    with connect(source, "appdb") as src, connect(repl.target, "appdb") as tgt:
        before = security_snapshot(src)
        plan = repl.plan(src, tgt, "run_ok", fence_args={"roles": ["app_group"]})
        timeline = run_cutover(plan)
        writer.stop()

        assert timeline["status"] == "completed"
        assert [s["step"] for s in timeline["steps"]] == [
            "prepare_fence", "prepare_proof", "prepare_cdc", "block_writes", "drain_source", "cdc_applied",
            "stop_cdc", "sync_sequences", "enable_triggers", "prove_source_quiet", "open_target", "finish_cdc"]
        assert all(s["ok"] for s in timeline["steps"])
        assert timeline["source_quiet_proof"]["ok"] and timeline["source_quiet_proof"]["detail"] == {
            "appdb": {"changes": 0}}
        assert writer.failures > 0
        # Every committed write reached the target, and nothing else.
        assert ids(src) == ids(tgt)
        assert set(writer.written) <= set(ids(tgt))
        # Sequences continue past the last id, and the trigger fires again on the target.
        new_id = tgt.execute("INSERT INTO app.items (v) VALUES ('on target') RETURNING id").fetchone()[0]
        assert new_id > max(ids(src))
        assert tgt.execute("SELECT count(*) FROM app.audit WHERE item_id = %s", (new_id,)).fetchone()[0] == 1
        assert subscription_state(tgt, repl.subscription) is None

        # The journal says so, and a rerun of the same run changes nothing.
        state = journal_for(tgt, "run_ok").read()
        assert state.target_open["databases"] == ["appdb"]
        assert run_cutover(repl.plan(src, tgt, "run_ok", fence_args={"roles": ["app_group"]}))["note"] == \
            "already cut over by this run"
        # Another run of the migration finds the database already cut over.
        with pytest.raises(CutoverError, match="run_ok already cut over"):
            run_cutover(repl.plan(src, tgt, "run_later", fence_args={"roles": ["app_group"]}))

        # The source stays fenced: the teardown changes nothing once the target is open, unless forced.
        restore = lambda records: restore_role_fence(src, records)  # noqa: E731
        assert unblock_run(journal_for(tgt, "run_ok"), restore)["restored"] == []
        assert not can_connect(source, "appdb", "app_rw")
        assert unblock_run(journal_for(tgt, "run_ok"), restore, force=True)["restored"]
        assert security_snapshot(src) == before
    repl.drop_slot()


@pytest.mark.safety
def test_a_writer_the_fence_misses_fails_the_proof_before_the_target_opens(pg_servers, source):
    repl = Replication(pg_servers, source, "miss")
    # monitor is kept by the fence (exclude_roles): it reconnects each time its session is ended and turns
    # off the read-only default its new sessions get.
    writer = AppWriter(source.conninfo("appdb", user="monitor"))
    writer.start()
    wait_for(lambda: len(writer.written) >= 50, 30, "the writer to get going")
    with connect(source, "appdb") as src, connect(repl.target, "appdb") as tgt:
        before = security_snapshot(src)
        # A slow step after CDC stops (thousands of sequences, say) gives the writer time to come back.
        plan = repl.plan(src, tgt, "run_miss")
        plan.after_stop = [("slow_step", lambda: time.sleep(0.3)), *plan.after_stop]
        with pytest.raises(CutoverAborted) as aborted:
            run_cutover(plan)
        error = aborted.value
        assert error.failed_step == "prove_source_quiet"
        assert "after its final LSN and are not on the target" in str(error)
        assert "app.items" in str(error) and "monitor@appdb" in str(error)
        assert "restored exactly" in str(error) and "resumed where it stopped" in str(error)
        steps = {s["step"]: s for s in error.timeline["steps"]}
        assert "open_target" not in steps and steps["restore_writes"]["ok"]
        assert steps["disable_triggers"]["ok"] and steps["resume_cdc"]["ok"]
        # Synchronous apply was for the window only: CDC goes on committing asynchronously.
        assert steps["prepare_cdc"]["ok"] and steps["cdc_asynchronous"]["ok"]
        assert tgt.execute("SELECT subsynccommit FROM pg_subscription WHERE subname = %s",
                           (repl.subscription,)).fetchone()[0] == "off"
        assert error.timeline["source_quiet_proof"]["ok"] is False
        state = journal_for(tgt, "run_miss").read()
        assert state.target_open is None and not state.fenced and state.outcome["state"] == "aborted"
        assert security_snapshot(src) == before
        assert tgt.execute("SELECT tgenabled FROM pg_trigger WHERE tgname = 'audit_item'").fetchone()[0] == "D"

        # CDC was resumed where it stopped, and catches up with every write.
        writer.stop()
        wait_for(lambda: ids(tgt) == ids(src), 60, "CDC to catch up after the abort")
    repl.drop_slot()


@pytest.mark.safety
def test_ddl_after_the_drift_check_ahead_of_the_fence_aborts_the_cutover_inside_the_window(pg_servers, source):
    """The check ahead of the fence passes; DDL then comes before writes are blocked (the last moment it
    can): the in-window re-check, which reads only the source's catalog marker, must see it and abort."""
    repl = Replication(pg_servers, source, "ddl")
    with connect(source, "appdb") as src, connect(repl.target, "appdb") as tgt, connect(source, "appdb") as other:
        before = security_snapshot(src)
        watch = SourceSchemaWatch(src, tgt, ["app"], database="appdb")
        plan = repl.plan(src, tgt, "run_ddl", after_drain=[("check_schema_drift", watch.recheck)])
        plan.before_fence = [("check_schema_drift_ahead", watch.ahead),
                             ("ddl", lambda: other.execute("ALTER TABLE app.items ADD COLUMN note text"))]
        with pytest.raises(CutoverAborted) as aborted:
            run_cutover(plan)
        assert aborted.value.failed_step == "check_schema_drift"
        assert "column app.items.note: only on the source (text null)" in str(aborted.value)
        assert "restored exactly" in str(aborted.value)
        steps = {s["step"]: s for s in aborted.value.timeline["steps"]}
        assert steps["check_schema_drift_ahead"]["ok"] and steps["block_writes"]["ok"]
        assert "stop_cdc" not in steps and "open_target" not in steps
        assert security_snapshot(src) == before
    with connect(source, "appdb") as src:
        src.execute("ALTER TABLE app.items DROP COLUMN note")
    repl.drop_slot()


@pytest.mark.safety
def test_abort_after_cdc_stopped_disables_triggers_again_and_cdc_resumes(pg_servers, source):
    repl = Replication(pg_servers, source, "late")
    with connect(source, "appdb") as src, connect(repl.target, "appdb") as tgt, \
            connect(repl.target, "appdb") as locker:
        before = security_snapshot(src)

        def fail():
            raise RuntimeError("the opener's prerequisites are missing")

        plan = repl.plan(src, tgt, "run_late")
        plan.after_stop = [*plan.after_stop, ("check_opener", fail)]
        with pytest.raises(CutoverAborted) as aborted:
            run_cutover(plan)
        assert aborted.value.failed_step == "check_opener"
        assert "CDC had been stopped and was resumed where it stopped" in str(aborted.value)
        steps = {s["step"]: s for s in aborted.value.timeline["steps"]}
        assert steps["enable_triggers"]["ok"] and steps["disable_triggers"]["ok"]
        assert tgt.execute("SELECT tgenabled FROM pg_trigger WHERE tgname = 'audit_item'").fetchone()[0] == "D"
        assert security_snapshot(src) == before

        # A lock held on a target table while triggers are re-enabled: the statement gives up at
        # lock_timeout and the cutover aborts instead of keeping writes blocked.
        wait_for(lambda: subscription_state(tgt, repl.subscription)["worker_pid"], 30, "the apply worker to restart")
        locker.execute("BEGIN")
        locker.execute("LOCK TABLE app.items IN ROW EXCLUSIVE MODE")
        plan = repl.plan(src, tgt, "run_locked")
        bound_session(tgt, lock_timeout_s=0.3, statement_timeout_s=30)
        with pytest.raises(CutoverAborted) as aborted:
            run_cutover(plan)
        locker.execute("ROLLBACK")
        assert aborted.value.failed_step == "enable_triggers"
        assert "lock timeout" in str(aborted.value)
        assert security_snapshot(src) == before

        # A step that outlasts max_write_block_seconds aborts the cutover at the next step.
        wait_for(lambda: subscription_state(tgt, repl.subscription)["worker_pid"], 30, "the apply worker to restart")
        plan = repl.plan(src, tgt, "run_slow", max_write_block_s=3)
        plan.after_stop = [("slow_step", lambda: time.sleep(3.1)), *plan.after_stop]
        with pytest.raises(CutoverAborted, match="max_write_block_seconds") as aborted:
            run_cutover(plan)
        assert aborted.value.failed_step == "slow_step"
        assert security_snapshot(src) == before

    with connect(source, "appdb", user="app_rw") as app:
        app.execute("INSERT INTO app.items (v) VALUES ('after abort')")
    with connect(source, "appdb") as src, connect(repl.target, "appdb") as tgt:
        repl.resume_cdc(tgt)
        wait_for(lambda: ids(tgt) == ids(src), 60, "CDC to catch up after the aborts")
    repl.drop_slot()


@pytest.mark.safety
def test_runs_and_migrations_sharing_a_source_fence_and_restore_only_their_own_databases(source):
    """A run for appdb opened its target; a later run (and another migration) for "Other DB" aborts:
    its restore reads its own journal entries only and gives "Other DB" back exactly."""
    with connect(source, "appdb") as admin, connect(source, "postgres") as journal_conn:
        before = security_snapshot(admin)
        restore = lambda records: restore_role_fence(admin, records)  # noqa: E731
        run_a = journal_for(journal_conn, "run_a")
        role_fence(admin, run_a, databases=["appdb"]).block()
        run_a.write("target_open", "done", {"databases": ["appdb"]})
        for journal in (journal_for(journal_conn, "run_b"), journal_for(journal_conn, "run_x", "other_mig")):
            role_fence(admin, journal, databases=["Other DB"]).block()
            assert not can_connect(source, "Other DB", "app_rw")
            assert unblock_run(journal, restore)["restored"]
            # "Other DB" is writable again; appdb stays fenced for run_a.
            with connect(source, "Other DB", user="app_rw") as back:
                assert back.execute("SHOW default_transaction_read_only").fetchone()[0] == "off"
            assert not can_connect(source, "appdb", "app_rw")
        assert unblock_run(run_a, restore)["note"] == "the target is open; the source stays fenced"
        assert unblock_run(run_a, restore, force=True)["restored"]
        assert security_snapshot(admin) == before


@pytest.mark.safety
def test_a_client_of_the_migrations_own_login_stops_the_cutover_before_anything_is_lost(pg_servers, source):
    """The migration's own login must stay able to connect, so the fence cannot keep a client using it
    (on RDS often the master user) from coming back later: its session aborts the cutover at the drain."""
    repl = Replication(pg_servers, source, "own")
    writer = AppWriter(source.conninfo("appdb"))  # the migration's own login, lifting read-only
    writer.start()
    wait_for(lambda: len(writer.written) >= 20, 30, "the writer to get going")
    with connect(source, "postgres") as admin, connect(repl.target, "appdb") as tgt:
        before = security_snapshot(admin)
        src = connect(source, "appdb")
        plan = repl.plan(src, tgt, "run_own", unfenceable_roles=["postgres"])
        with pytest.raises(CutoverAborted) as aborted:
            run_cutover(plan)
        assert aborted.value.failed_step == "drain_source"
        assert "client sessions of ['postgres'] were connected" in str(aborted.value)
        # CDC was never stopped; its apply commits asynchronously again, as before the attempt.
        assert tgt.execute("SELECT subenabled, subsynccommit FROM pg_subscription WHERE subname = %s",
                           (repl.subscription,)).fetchone() == (True, "off")
        assert "postgres@appdb" in str(aborted.value)
        assert "open_target" not in {s["step"] for s in aborted.value.timeline["steps"]}
        assert security_snapshot(admin) == before
        count = len(writer.written)
        wait_for(lambda: len(writer.written) > count + 10, 30, "the writer to write again")
        writer.stop()
        wait_for(lambda: ids(tgt) == ids(src), 60, "CDC to catch up after the abort")
        src.close()
    repl.drop_slot()

