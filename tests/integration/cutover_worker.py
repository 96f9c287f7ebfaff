"""Runs one cutover in its own process and kills itself with SIGKILL right after the journal records a
given entry: a worker lost at a step boundary of the critical section. Used by test_cutover_journal.py.

Usage: cutover_worker.py '<json>' with source, target (conninfo), run_id, slot, subscription,
publication, target_port, kill_entry, kill_state.
"""

from __future__ import annotations

import json
import os
import signal
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE.parents[1] / "plugins"), str(HERE)]

import psycopg  # noqa: E402
from cutover_helpers import CONTROL, native_plan  # noqa: E402

from migration.cutover import run_cutover  # noqa: E402
from migration.journal import CutoverJournal  # noqa: E402
from migration.target_prep import saved_trigger_ddl  # noqa: E402


class DyingJournal(CutoverJournal):
    """The real journal; the process dies the moment the chosen entry is durable."""

    kill_at: tuple[str, str] = ("", "")

    def write(self, entry, state, detail=None):
        super().write(entry, state, detail)
        if (entry, state) == self.kill_at:
            os.kill(os.getpid(), signal.SIGKILL)

    def write_many(self, entries):
        super().write_many(entries)
        if self.kill_at in [(entry, state) for entry, state, _ in entries]:
            os.kill(os.getpid(), signal.SIGKILL)


def main() -> None:
    args = json.loads(sys.argv[1])
    src = psycopg.connect(args["source"], autocommit=True)
    tgt = psycopg.connect(args["target"], autocommit=True)
    journal = DyingJournal(conn=tgt, control_schema=CONTROL, migration_id="mig", run_id=args["run_id"])
    journal.kill_at = (args["kill_entry"], args["kill_state"])
    plan = native_plan(src, tgt, args["run_id"], slot=args["slot"], subscription=args["subscription"],
                       publication=args["publication"], target_port=args["target_port"],
                       enable_ddl=saved_trigger_ddl(tgt, CONTROL), journal=journal,
                       fence_args={"roles": ["app_group"]})
    print(json.dumps(run_cutover(plan)["status"]))


if __name__ == "__main__":
    main()
