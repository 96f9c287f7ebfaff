"""The source side of the cutover's critical section: quiet, then proven quiet.

- ``bound_session`` makes each connection of the critical section fit for it;
- ``SourceDrain``, the same for every fence: it ends every client session on the migrated databases
  but the cutover's own, waits until nothing is in flight and reads the source's final LSN;
- ``ChangesAfterFinalLsn``, the proof: once CDC is stopped, the slots hold no change that the target
  has not applied. Whatever a fence missed fails here, before the target opens, instead of being lost.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import psycopg
from psycopg.rows import dict_row

from migration import sql as sqlfiles
from migration.config import check_names
from migration.cutover import CutoverError
from migration.lsn import LSN

APPLICATION_NAME = "pg-account-migration cutover"


def bound_session(conn: psycopg.Connection, *, lock_timeout_s: float, statement_timeout_s: float,
                  run: str = "") -> None:
    """Make a connection fit for the critical section: synchronous commits, every statement bounded by
    ``lock_timeout`` and ``statement_timeout``, read-only default lifted (the fence may set it for the
    migration's own login), and an application_name that marks the session as the cutover's own."""
    conn.execute(sqlfiles.load("cutover_session"), {
        "lock_timeout": f"{max(1, int(lock_timeout_s * 1000))}ms",
        "statement_timeout": f"{max(1, int(statement_timeout_s * 1000))}ms",
        "application_name": f"{APPLICATION_NAME} {run}".strip()[:63]})


@dataclass
class SourceDrain:
    """The drain, whatever the fence: nothing in flight on the source, then its final LSN.

    Every client session on the migrated databases is ended, whatever its role, except the cutover's own
    (``keep_pids``): a security group does not cut open connections, and a role fence does not reach a
    login it does not list. Quiet means: no such session left, no open transaction that has written, and
    no prepared transaction. The final LSN is the WAL insert position read then, so every commit
    acknowledged before it is at or below it, even where applications commit asynchronously.
    """

    conn: psycopg.Connection
    databases: Sequence[str]
    keep_pids: Sequence[int] = ()
    # Each poll is one cheap query; a shorter interval is time writes stay blocked less.
    poll_interval_s: float = 0.002
    settle_s: float = 0.01
    ended: list[dict[str, Any]] = field(default_factory=list, init=False)

    def __post_init__(self) -> None:
        self.databases = check_names(list(self.databases), "SourceDrain", "databases")

    def drain(self, timeout_s: float) -> LSN:
        deadline = time.monotonic() + timeout_s
        params = {"databases": list(self.databases), "keep_pids": list(self.keep_pids)}
        quiet_since: float | None = None
        while True:
            with self.conn.cursor(row_factory=dict_row) as cur:
                state = cur.execute(sqlfiles.load("cutover_drain_check"), params).fetchone()
            self.ended += state["sessions_ended"]
            if not (state["sessions_ended"] or state["open_transactions"] or state["prepared_transactions"]):
                if quiet_since is not None and time.monotonic() - quiet_since >= self.settle_s:
                    break
                # Quiet twice, ``settle_s`` apart: a session that passed its CONNECT check just before the
                # fence shows up only once it has started, and is ended then.
                quiet_since = quiet_since or time.monotonic()
            else:
                quiet_since = None
            if time.monotonic() > deadline:
                raise CutoverError(
                    f"the source did not drain within {timeout_s:g} s: sessions still being ended "
                    f"{_who(state['sessions_ended'])}, open transactions {state['open_transactions']}, prepared "
                    f"transactions {state['prepared_transactions']} (finish those with COMMIT PREPARED or "
                    "ROLLBACK PREPARED)")
            time.sleep(self.poll_interval_s)
        return LSN(self.conn.execute(sqlfiles.load("cutover_final_lsn")).fetchone()[0])


def _who(sessions: Sequence[dict[str, Any]]) -> str:
    seen = sorted({f"{s.get('role')}@{s.get('database')} ({s.get('application_name') or 'no application_name'})"
                   for s in sessions})
    return ", ".join(seen) if seen else "none"


# ---------------------------------------------------------------- the proof

@dataclass(frozen=True)
class SlotCheck:
    """One database's slot as the proof reads it: ``plugin`` is pgoutput (with ``publication``) or
    test_decoding (the migrated ``schemas`` filter out the drain marker and DMS's own tables)."""

    database: str
    source_conn: psycopg.Connection
    slot_name: str
    plugin: str
    publication: str | None = None
    schemas: Sequence[str] = ()


@dataclass
class ChangesAfterFinalLsn:
    """Proof, once CDC is stopped and before the target opens, that nothing committed on the source is
    missing from the target: each slot holds no change in the migrated tables past the position the
    target confirmed (which is past the final LSN). Changes there were committed after the fence and
    never applied; the cutover then aborts, naming the tables, transactions and sessions."""

    checks: Sequence[SlotCheck]
    databases: Sequence[str]
    keep_pids: Sequence[int] = ()
    release_timeout_s: float = 10.0
    poll_interval_s: float = 0.005
    seen_sessions: list[dict[str, Any]] = field(default_factory=list)

    def prepare(self) -> dict[str, Any]:
        for check in self.checks:
            if check.plugin not in ("pgoutput", "test_decoding"):
                raise CutoverError(f"database {check.database}: slot {check.slot_name} uses plugin {check.plugin!r}; "
                                   "the cutover can prove a quiet source only with pgoutput or test_decoding")
            if check.plugin == "pgoutput" and not check.publication:
                raise CutoverError(f"database {check.database}: the pgoutput slot needs its publication")
        return {"slots": [c.slot_name for c in self.checks]}

    def _wait_released(self, conn: psycopg.Connection, slots: list[str]) -> None:
        # A slot cannot be read while a walsender holds it; stopping CDC lets it go within moments.
        deadline = time.monotonic() + self.release_timeout_s
        while held := conn.execute(sqlfiles.load("cutover_slots_active"), {"slots": slots}).fetchall():
            if time.monotonic() > deadline:
                raise CutoverError(f"slots still in use {dict(held)} {self.release_timeout_s:g} s after CDC stopped: "
                                   "the proof that no change was left behind cannot be read")
            time.sleep(self.poll_interval_s)

    def check(self) -> dict[str, Any]:
        found: dict[str, dict[str, Any]] = {}
        for check in self.checks:
            conn = check.source_conn
            self._wait_released(conn, [check.slot_name])
            with conn.cursor(row_factory=dict_row) as cur:
                if check.plugin == "pgoutput":
                    row = cur.execute(sqlfiles.load("cutover_changes_after_pgoutput"),
                                      {"slot_name": check.slot_name, "publication": check.publication}).fetchone()
                else:
                    row = cur.execute(sqlfiles.load("cutover_changes_after_test_decoding"),
                                      {"slot_name": check.slot_name, "schemas": list(check.schemas)}).fetchone()
            found[check.database] = dict(row)
        late = {db: r for db, r in found.items() if r["changes"]}
        if late:
            conn = self.checks[0].source_conn
            with conn.cursor(row_factory=dict_row) as cur:
                now = [dict(r) for r in cur.execute(sqlfiles.load("cutover_sessions"), {
                    "databases": list(self.databases), "keep_pids": list(self.keep_pids)}).fetchall()]
            detail = "; ".join(f"{db}: {r['changes']} change(s) in {r['tables']} by transaction(s) {r['xids']} "
                               f"from {r['first_lsn']}" for db, r in late.items())
            raise CutoverError(
                f"writes reached the source after its final LSN and are not on the target ({detail}). Sessions on "
                f"the migrated databases now: {_who(now)}; ended during the window: {_who(self.seen_sessions)}. "
                "The fence does not cover them: add those roles to cutover.application_roles (members of a listed "
                "role are covered; a client using the migration's own login or a superuser needs a login of its "
                "own), or stop that client, before the next attempt")
        return {db: {"changes": 0} for db in found}
