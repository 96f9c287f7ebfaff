"""A worker killed (SIGKILL) at each step boundary of the critical section, on real servers.

The cutover runs in a child process (tests/integration/cutover_worker.py) that kills itself the moment
the run's journal records the chosen entry, so nothing of the cutover's own cleanup runs: exactly what a
lost worker leaves. Then the teardown (``unblock_run``, reading only the journal) and a rerun of the same
run must end in a correct state: writes restored, CDC resumed, and after the rerun every committed row on
the target. Nothing is stood in: both servers are real PostgreSQL 15, the target a pg_basebackup clone.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from cutover_helpers import (
    AppWriter,
    Replication,
    can_connect,
    connect,
    ids,
    journal_for,
    make_source,
    security_snapshot,
    wait_for,
)

from migration.cutover import run_cutover, unblock_run
from migration.fence import restore_role_fence
from migration.native_cdc import enable_subscription, subscription_state
from migration.target_prep import disable_user_triggers

pytestmark = [pytest.mark.integration, pytest.mark.safety]

WORKER = Path(__file__).resolve().parent / "cutover_worker.py"
BOUNDARIES = [("step:block_writes", "done"), ("step:drain_source", "done"), ("step:cdc_applied", "done"),
              ("step:stop_cdc", "done"), ("step:enable_triggers", "done"), ("step:prove_source_quiet", "done"),
              ("commit_point", "passed"), ("step:open_target", "done")]


@pytest.fixture(scope="module")
def source(pg_servers):
    return make_source(pg_servers, "killsrc")


def kill_worker_at(repl: Replication, run_id: str, entry: str, state: str) -> None:
    args = {"source": repl.source.conninfo("appdb"), "target": repl.target.conninfo("appdb"), "run_id": run_id,
            "slot": repl.slot, "subscription": repl.subscription, "publication": repl.publication,
            "target_port": repl.target.port, "kill_entry": entry, "kill_state": state}
    done = subprocess.run([sys.executable, str(WORKER), json.dumps(args)], capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == -9, f"the worker was to die at {entry}={state}: {done.stdout}{done.stderr}"


def teardown(src, tgt, run_id: str) -> dict:
    undo = [("disable_triggers", lambda: disable_user_triggers(tgt, ["app"], control_schema="migration_control")),
            ("resume_cdc", lambda: enable_subscription(tgt, "sub_" + run_id))]
    return unblock_run(journal_for(tgt, run_id), lambda records: restore_role_fence(src, records),
                       undo_after_stop=undo)


@pytest.mark.parametrize(("entry", "state"), BOUNDARIES, ids=[f"{e}={s}" for e, s in BOUNDARIES])
def test_teardown_then_rerun_after_a_worker_is_lost(pg_servers, source, entry, state):
    run_id = "k" + str(BOUNDARIES.index((entry, state)))
    repl = Replication(pg_servers, source, run_id)
    writer = AppWriter(source.conninfo("appdb", user="app_rw"))
    writer.start()
    wait_for(lambda: len(writer.written) >= 20, 30, "the writer to get going")
    # The admin session is on a database the fence does not touch; the fence ends sessions on appdb.
    with connect(source, "postgres") as admin, connect(repl.target, "appdb") as tgt:
        before = security_snapshot(admin)
        kill_worker_at(repl, run_id, entry, state)
        journal = journal_for(tgt, run_id)
        assert journal.read().entries[entry]["state"] == state
        assert journal.read().fenced and not can_connect(source, "appdb", "app_rw")

        # The teardown reads the journal: writes come back, triggers are off again, CDC applies again.
        result = teardown(admin, tgt, run_id)
        assert result["restored"]
        assert security_snapshot(admin) == before
        stopped = journal.read().step("stop_cdc") == "done"
        assert ("resume_cdc" in result["undone"]) == stopped
        assert subscription_state(tgt, repl.subscription)["enabled"]
        assert tgt.execute("SELECT tgenabled FROM pg_trigger WHERE tgname = 'audit_item'").fetchone()[0] == "D"
        count = len(writer.written)
        wait_for(lambda: len(writer.written) > count + 10, 30, "the writer to write again")
        assert teardown(admin, tgt, run_id)["restored"] == []

        # A rerun of the same run cuts over, and every committed row is on the target.
        wait_for(lambda: subscription_state(tgt, repl.subscription)["worker_pid"], 30, "the apply worker")
        src = connect(source, "appdb")
        timeline = run_cutover(repl.plan(src, tgt, run_id, fence_args={"roles": ["app_group"]}))
        writer.stop()
        assert timeline["status"] == "completed"
        assert ids(src) == ids(tgt)
        assert set(writer.written) <= set(ids(tgt))
        src.close()
        # The source stays fenced after a cutover; give it back for the next case.
        unblock_run(journal_for(tgt, run_id), lambda records: restore_role_fence(admin, records), force=True)
        assert security_snapshot(admin) == before
    repl.drop_slot()


def test_a_rerun_past_the_commit_point_only_opens_the_target(pg_servers, source):
    repl = Replication(pg_servers, source, "kc")
    writer = AppWriter(source.conninfo("appdb", user="app_rw"))
    writer.start()
    wait_for(lambda: len(writer.written) >= 20, 30, "the writer to get going")
    with connect(repl.target, "appdb") as tgt:
        kill_worker_at(repl, "kc", "commit_point", "passed")
        # No teardown ran: the source is still fenced, and the rerun goes forward from the commit point.
        src = connect(source, "appdb")
        timeline = run_cutover(repl.plan(src, tgt, "kc", fence_args={"roles": ["app_group"]}))
        writer.stop()
        assert [s["step"] for s in timeline["steps"]] == ["open_target", "finish_cdc"]
        assert timeline["status"] == "completed"
        assert not can_connect(source, "appdb", "app_rw")
        assert ids(src) == ids(tgt)
        assert set(writer.written) <= set(ids(tgt))
        assert unblock_run(journal_for(tgt, "kc"), lambda r: restore_role_fence(src, r))["note"] == \
            "the target is open; the source stays fenced"
        unblock_run(journal_for(tgt, "kc"), lambda r: restore_role_fence(src, r), force=True)
        src.close()
    repl.drop_slot()
