"""How the critical section journals its steps: one commit per step while writes are blocked.

The cutover runs as CutoverOperator assembles it (cutover_helpers.native_plan) on real PostgreSQL 15
servers (the target a pg_basebackup clone); the journal is the real one, with every statement it runs
recorded in order (each statement is one commit: the connection is in autocommit).
"""

from __future__ import annotations

import pytest
from cutover_helpers import CONTROL, AppWriter, Replication, connect, ids, make_source, wait_for

from migration.cutover import run_cutover, unblock_run
from migration.fence import restore_role_fence
from migration.journal import CutoverJournal

pytestmark = [pytest.mark.integration, pytest.mark.safety]


class RecordingJournal(CutoverJournal):
    """The real journal; each statement's entries are kept in the order they were committed."""

    commits: list[list[tuple[str, str]]]

    def write(self, entry, state, detail=None):
        super().write(entry, state, detail)
        self.commits.append([(entry, state)])

    def write_many(self, entries):
        before = len(self.commits)
        super().write_many(entries)
        if len(self.commits) == before:  # one statement for several entries
            self.commits.append([(entry, state) for entry, state, _ in entries])


def test_each_step_is_journaled_before_it_runs_and_its_end_goes_with_the_next_entry(pg_servers):
    source = make_source(pg_servers, "jcsrc")
    repl = Replication(pg_servers, source, "jc")
    writer = AppWriter(source.conninfo("appdb", user="app_rw"))
    writer.start()
    wait_for(lambda: len(writer.written) >= 20, 30, "the writer to get going")
    with connect(source, "appdb") as src, connect(repl.target, "appdb") as tgt:
        journal = RecordingJournal(conn=tgt, control_schema=CONTROL, migration_id="mig", run_id="jc")
        journal.commits = []
        plan = repl.plan(src, tgt, "jc", fence_args={"roles": ["app_group"]}, journal=journal)
        started_in_step = {}

        def watching(name, fn):
            def run():
                # What is durable when the step begins: its own "started", and the previous step's end.
                started_in_step[name] = [entry for commit in journal.commits for entry in commit]
                return fn()
            return run

        plan.after_stop = [(name, watching(name, fn)) for name, fn in plan.after_stop]
        timeline = run_cutover(plan)
        writer.stop()
        assert timeline["status"] == "completed"
        assert ids(src) == ids(tgt) and set(writer.written) <= set(ids(tgt))

        commits = journal.commits
        where = {entry: i for i, commit in enumerate(commits) for entry in commit}
        steps = [s["step"] for s in timeline["steps"]]
        read_only = {"cdc_applied", "prove_source_quiet"}
        for name in steps:
            started, done = where[(f"step:{name}", "started")], where[(f"step:{name}", "done")]
            # A step that changes something is journaled before it runs; one that only reads or waits may be
            # journaled with its end.
            assert started < done or (name in read_only and started == done), name
        assert ("step:sync_sequences", "started") in started_in_step["sync_sequences"]
        assert ("step:stop_cdc", "done") in started_in_step["sync_sequences"]
        assert ("step:sync_sequences", "done") in started_in_step["enable_triggers"]
        # Inside the window a step's end is committed with the next step's start; stop_cdc's end (a teardown
        # reads it) is committed on its own, at once.
        window = steps[steps.index("block_writes"):steps.index("open_target")]
        for before, after in zip(window, window[1:], strict=False):
            assert where[(f"step:{before}", "done")] == where[(f"step:{after}", "started")] or before == "stop_cdc"
        assert commits[where[("step:stop_cdc", "done")]] == [("step:stop_cdc", "done")]
        assert where[("step:prove_source_quiet", "done")] == where[("commit_point", "passed")] == \
            where[("step:open_target", "started")]
        assert commits[where[("step:open_target", "done")]] == [("step:open_target", "done")]
        assert where[("step:open_target", "done")] < where[("target_open", "done")]
        # After the fence's start, one commit per step that changes something, one for stop_cdc's end and
        # one for the opening's end: each step used to take two.
        in_window = where[("step:open_target", "done")] - where[("step:block_writes", "started")]
        assert in_window == len([name for name in window if name not in read_only]) + 2
        # The journal read back holds every step as done.
        state = CutoverJournal(conn=tgt, control_schema=CONTROL, migration_id="mig", run_id="jc").read()
        assert all(state.step(name) == "done" for name in steps)
        unblock_run(journal, lambda r: restore_role_fence(src, r), force=True)
    repl.drop_slot()
