"""The cutover journal: one run's cutover, step by step, kept where it can be read after the source is fenced.

It is a table, ``<control_schema>.cutover_journal``, in the target's control database (the target stays
reachable whichever way the source is fenced), keyed by migration id and Airflow run id. It holds:

- ``step:<name>``: ``started`` before a step of the critical section runs, ``done`` (written with the
  next entry, in the same commit; ``stop_cdc``'s at once) or ``failed`` after;
- ``fence:<kind>:<object>``: what the write fence is about to change and its previous state, written
  before the change (``fenced``) and marked ``restored`` when put back;
- ``commit_point``: written right before the target is opened (for DNS: before the change is
  submitted). Past it, the source may reopen only if the opening was reverted and the revert confirmed;
- ``target_open``: the target is open for the run's databases; the source stays fenced for good.
- ``outcome``: how the critical section ended, in words, with the next step when a person must act.

The critical section, its abort path, the teardown that unblocks the source and every rerun decide from
this journal only, never from XCom or a task's return value (Airflow clears a task's XCom on each try).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import psycopg
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb

from migration import sql as sqlfiles
from migration.config import check_names

FENCED, RESTORED = "fenced", "restored"


@dataclass(frozen=True)
class JournalState:
    """What one run's journal says, derived from its entries."""

    entries: dict[str, dict[str, Any]]

    def step(self, name: str) -> str | None:
        entry = self.entries.get(f"step:{name}")
        return entry["state"] if entry else None

    @property
    def fence_records(self) -> list[dict[str, Any]]:
        """Fence changes not yet restored: ``{kind, object, previous}``, in the order they were made."""
        return [{"kind": e["detail"]["kind"], "object": e["detail"]["object"], "previous": e["detail"]["previous"]}
                for name, e in self.entries.items() if name.startswith("fence:") and e["state"] == FENCED]

    @property
    def fenced(self) -> bool:
        return bool(self.fence_records)

    @property
    def commit_point(self) -> dict[str, Any] | None:
        entry = self.entries.get("commit_point")
        return entry["detail"] if entry and entry["state"] == "passed" else None

    @property
    def target_open(self) -> dict[str, Any] | None:
        entry = self.entries.get("target_open")
        return entry["detail"] if entry and entry["state"] == "done" else None

    @property
    def outcome(self) -> dict[str, Any] | None:
        entry = self.entries.get("outcome")
        return {"state": entry["state"], **entry["detail"]} if entry else None


@dataclass
class CutoverJournal:
    """The journal of one run: ``conn`` is an autocommit connection to the target's control database."""

    conn: psycopg.Connection
    control_schema: str
    migration_id: str
    run_id: str

    def __post_init__(self) -> None:
        self.control_schema = check_names([self.control_schema], "CutoverJournal", "control_schema")[0]
        for name in ("migration_id", "run_id"):
            value = getattr(self, name)
            if not isinstance(value, str) or not value.strip():
                raise ValueError(f"CutoverJournal: {name}: a non-empty string is required, got {value!r}")

    def _key(self) -> dict[str, str]:
        return {"migration_id": self.migration_id, "run_id": self.run_id}

    def ensure(self) -> CutoverJournal:
        self.conn.execute(sqlfiles.compose("cutover_journal_table", schema=self.control_schema))
        return self

    def write(self, entry: str, state: str, detail: dict[str, Any] | None = None) -> None:
        self.conn.execute(sqlfiles.compose("cutover_journal_write", schema=self.control_schema),
                          {**self._key(), "entry": entry, "state": state, "detail": Jsonb(detail or {})})

    def write_many(self, entries: Sequence[tuple[str, str, dict[str, Any] | None]]) -> None:
        """``(entry, state, detail)`` entries in one statement: durable together, in one commit. An entry
        given twice keeps its last state."""
        last = {entry: (entry, state, detail) for entry, state, detail in entries}
        if len(last) == 1:
            self.write(*next(iter(last.values())))
        elif last:
            rows = [{"entry": entry, "state": state, "detail": detail or {}} for entry, state, detail in last.values()]
            self.conn.execute(sqlfiles.compose("cutover_journal_write_many", schema=self.control_schema),
                              {**self._key(), "entries": Jsonb(rows)})

    def step(self, name: str, state: str, detail: dict[str, Any] | None = None) -> None:
        self.write(f"step:{name}", state, detail)

    def record_fence(self, records: list[dict[str, Any]]) -> None:
        """Record ``{kind, object, previous}`` changes before they are made; an unrestored record is kept."""
        rows = [{"entry": f"fence:{r['kind']}:{r['object']}", "detail": r} for r in records]
        if rows:
            self.conn.execute(sqlfiles.compose("cutover_journal_record", schema=self.control_schema),
                              {**self._key(), "records": Jsonb(rows)})

    def mark_restored(self) -> None:
        self.conn.execute(sqlfiles.compose("cutover_journal_restored", schema=self.control_schema), self._key())

    def read(self) -> JournalState:
        with self.conn.cursor(row_factory=dict_row) as cur:
            rows = cur.execute(sqlfiles.compose("cutover_journal_read", schema=self.control_schema),
                               self._key()).fetchall()
        return JournalState({r["entry"]: {"state": r["state"], "detail": r["detail"], "at": r["at"].isoformat()}
                             for r in rows})

    def opened_by_other_runs(self, databases: list[str]) -> list[dict[str, Any]]:
        """Other runs of this migration that already opened the target for any of ``databases``."""
        with self.conn.cursor(row_factory=dict_row) as cur:
            rows = cur.execute(sqlfiles.compose("cutover_journal_opened_by", schema=self.control_schema),
                               {"migration_id": self.migration_id, "databases": list(databases)}).fetchall()
        return [r for r in rows if r["run_id"] != self.run_id]
