"""Sequences at cutover: CDC does not carry nextval(), so the target's sequences are set from the source's.

Reading is one query on the source and applying is one statement on the target, however many
sequences there are. ``SequenceSync`` keeps the write-blocked window short: ``presync`` sets every
sequence on the target ahead of the fence; inside the window ``sync_moved`` reads the source once
(its values are final then) and sets on the target only the sequences whose state is not the one
set ahead of the fence, so every sequence ends at exactly the source's state and none is behind.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace

import psycopg
from psycopg.rows import dict_row

from migration import sql as sqlfiles
from migration.preflight import validate_schemas

log = logging.getLogger(__name__)


class SequenceSyncError(RuntimeError):
    """Sequences cannot be read on the source or are missing on the target; nothing was changed."""


@dataclass(frozen=True)
class SequenceState:
    """One source sequence. ``last_value`` is None while it is not called (``is_called`` False): never, or
    not since setval(..., false) or ALTER SEQUENCE RESTART; ``uncalled_value`` is then what its next
    nextval returns (None: not read, taken as the start)."""

    schema: str
    name: str
    last_value: int | None
    is_called: bool
    start_value: int
    increment_by: int
    min_value: int
    max_value: int
    cycle: bool
    data_type: str
    oid: int | None = None
    uncalled_value: int | None = None

    @property
    def setval_args(self) -> tuple[int, bool]:
        """(value, is_called) for setval: an uncalled sequence stays uncalled at the value it hands out next."""
        if self.last_value is None:
            return (self.start_value if self.uncalled_value is None else self.uncalled_value), False
        return self.last_value, True


def read_sequences(source_conn: psycopg.Connection, schemas: Sequence[str]) -> list[SequenceState]:
    """Every sequence in ``schemas`` (standalone, serial and identity alike) with its current state."""
    names = validate_schemas(schemas)
    with source_conn.cursor(row_factory=dict_row) as cur:
        # With nothing synced yet, "moved since the presync" is every sequence of the schemas.
        rows = cur.execute(sqlfiles.load("sequences_moved"),
                           {"schemas": names, "oids": [], "last_values": []}).fetchall()
    _refuse_unreadable(rows)
    return _states(rows)


def _states(rows: Sequence[dict]) -> list[SequenceState]:
    return [
        SequenceState(schema=r["schema_name"], name=r["sequence_name"], last_value=r["last_value"],
                      is_called=r["last_value"] is not None, start_value=r["start_value"],
                      increment_by=r["increment_by"], min_value=r["min_value"], max_value=r["max_value"],
                      cycle=r["cycle"], data_type=r["data_type"], oid=r["oid"], uncalled_value=r["uncalled_value"])
        for r in rows
    ]


def _refuse_unreadable(rows: Sequence[dict]) -> None:
    unreadable = [f"{r['schema_name']}.{r['sequence_name']}" for r in rows if not r["readable"]]
    if unreadable:
        raise SequenceSyncError(
            f"The source role cannot read {len(unreadable)} sequence(s): {', '.join(map(repr, unreadable))}. "
            "GRANT SELECT ON ALL SEQUENCES IN SCHEMA <schema> TO <migration role>; then rerun."
        )


def sync_sequences(target_conn: psycopg.Connection, seqs: Sequence[SequenceState]) -> int:
    """setval every sequence on the target in one statement; returns how many were set.

    If any sequence is missing on the target, none is set and the error lists them all.
    """
    if not seqs:
        return 0
    for i, seq in enumerate(seqs):
        if not isinstance(seq, SequenceState):
            raise ValueError(f"seqs[{i}]: expected a SequenceState from read_sequences, got {type(seq).__name__}")
    values = [seq.setval_args for seq in seqs]
    params = {
        "schemas": [seq.schema for seq in seqs],
        "names": [seq.name for seq in seqs],
        "values": [value for value, _ in values],
        "called": [called for _, called in values],
    }
    missing, applied = target_conn.execute(sqlfiles.load("sequences_sync"), params).fetchone()
    if missing:
        raise SequenceSyncError(
            f"{len(missing)} sequence(s) do not exist on the target: {', '.join(missing)}. No sequence was changed. "
            "Create them on the target (the initial load should have), then rerun."
        )
    log.info("Set %d sequence(s) on the target", applied)
    return applied


@dataclass
class SequenceSync:
    """One database's sequences at cutover, in two passes.

    ``presync`` (ahead of the fence) reads every sequence of ``schemas`` on the source and sets it on the
    target. Inside the window, once the source is quiet, ``read_moved`` reads the source again in one
    statement that returns only the sequences whose state differs from the one ``presync`` set, or that
    ``presync`` did not see; ``sync_moved`` sets those on the target in one statement (reading first if
    ``read_moved`` did not run). A sequence not returned has the state ``presync`` set on the target, so
    it is not behind. Without ``presync`` (or after a failed one) every sequence is read and set.

    A sequence not called at the presync and still not called reads the same last value (none) however it
    was positioned meanwhile, so ``read_moved`` also reads the stored value of each of those
    (``sequences_uncalled_moved``): about 20-40 µs each, against 3-5 µs for the others. With
    ``uncalled_conn`` (a second session on the same database) that read runs in a thread of its own, at the
    same time as the main one, and once ahead of the fence too, so that session has those sequences open.

    ``source_conn`` is used for every other read, so the in-window read finds the sequences already open in
    its session; it may be a session of its own, so the read can run alongside other steps.
    """

    source_conn: psycopg.Connection
    target_conn: psycopg.Connection
    schemas: Sequence[str]
    uncalled_conn: psycopg.Connection | None = None
    _synced: list[SequenceState] | None = field(default=None, init=False, repr=False)
    _moved: list[SequenceState] | None = field(default=None, init=False, repr=False)

    def __post_init__(self) -> None:
        self.schemas = validate_schemas(self.schemas)

    def presync(self) -> dict:
        self._synced = self._moved = None
        seqs = read_sequences(self.source_conn, self.schemas)
        applied = sync_sequences(self.target_conn, seqs)
        self._synced = seqs
        uncalled = {seq.oid: seq for seq in seqs if seq.last_value is None}
        if uncalled and self.uncalled_conn:
            # The same read once ahead of the fence: the second session opens those sequences now, so its
            # read inside the window costs about half. What it finds is read again there.
            self._uncalled_moved(uncalled)
        return {"sequences": applied}

    def read_moved(self) -> dict:
        if self._synced is None:
            self._moved = read_sequences(self.source_conn, self.schemas)
            return {"checked": None, "moved": len(self._moved)}
        params = {"schemas": list(self.schemas), "oids": [seq.oid for seq in self._synced],
                  "last_values": [seq.last_value for seq in self._synced]}
        uncalled = {seq.oid: seq for seq in self._synced if seq.last_value is None}
        with ThreadPoolExecutor(max_workers=1) as pool:
            repositioned = pool.submit(self._uncalled_moved, uncalled) if uncalled and self.uncalled_conn else None
            with self.source_conn.cursor(row_factory=dict_row) as cur:
                rows = cur.execute(sqlfiles.load("sequences_moved"), params).fetchall()
            _refuse_unreadable(rows)
            moved = _states(rows)
            moved += repositioned.result() if repositioned else self._uncalled_moved(uncalled)
        self._moved = moved
        return {"checked": len(self._synced), "moved": len(self._moved)}

    def _uncalled_moved(self, uncalled: dict[int | None, SequenceState]) -> list[SequenceState]:
        """The presync's uncalled sequences that are still uncalled but were positioned elsewhere since."""
        if not uncalled:
            return []
        conn = self.uncalled_conn or self.source_conn
        rows = conn.execute(sqlfiles.load("sequences_uncalled_moved"),
                            {"oids": list(uncalled), "uncalled_values": [seq.uncalled_value
                                                                         for seq in uncalled.values()]}).fetchall()
        return [replace(uncalled[oid], uncalled_value=value) for oid, value in rows]

    def sync_moved(self) -> dict:
        read = self.read_moved() if self._moved is None else None
        moved, self._moved = self._moved, None
        applied = sync_sequences(self.target_conn, moved)
        checked = len(self._synced) if self._synced is not None else None
        log.info("%d sequence(s) set in the window; %s checked", applied, checked if read is None else read["checked"])
        return {"checked": checked, "set": applied}
