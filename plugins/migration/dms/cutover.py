"""DMS in the cutover's critical section: the CDC engine, the drain marker and stopping tasks.

``DmsCdcEngine`` is the ``cutover.CdcEngine`` of the DMS path: it proves from the source slots that
every task applied past the final LSN, then stops the tasks.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import psycopg

from migration import sql as sqlfiles
from migration.dms.errors import DmsDrainTimeout, DmsError, DmsInputError
from migration.dms.monitoring import cdc_metrics, require_slot, slot_position
from migration.dms.requests import check_arn, check_pg_name, check_slot_name, task_resource_id
from migration.dms.resources import describe_task, find_task, stop_task, stop_tasks, task_failure
from migration.lsn import LSN
from migration.native_cdc import slot_positions

# find_task: the cutover looks each database's task up by identifier before it builds the engine.
__all__ = ["DRAIN_MARKER_TABLE", "DmsCdcEngine", "DmsCdcDatabase", "find_task", "stop_task", "stop_tasks",
           "write_drain_marker"]

DRAIN_MARKER_TABLE = "dms_drain_marker"


# ---------------------------------------------------------------------------------------------
# The drain marker
# ---------------------------------------------------------------------------------------------

def write_drain_marker(conn: Any, schema: str, final_lsn: LSN) -> LSN:
    """Commit one small change after the final LSN in a table DMS does not replicate.

    DMS acknowledges (confirms in the slot) only changes it has applied; on a source whose writes are
    blocked there may be nothing after the final LSN for it to acknowledge, and this gives it one.
    """
    check_pg_name(schema, "marker_schema")
    with conn.cursor() as cur:
        cur.execute(sqlfiles.compose("dms_drain_marker_table", schema=schema, table=DRAIN_MARKER_TABLE))
        cur.execute(sqlfiles.compose("dms_drain_marker_write", schema=schema, table=DRAIN_MARKER_TABLE),
                    {"final_lsn": str(final_lsn)})
        return LSN(cur.fetchone()[0])


# ---------------------------------------------------------------------------------------------
# Stopping tasks
# ---------------------------------------------------------------------------------------------

# ---------------------------------------------------------------------------------------------
# The critical section's CDC engine
# ---------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class DmsCdcDatabase:
    """One database's CDC: its task, its slot on the source and, for the drain marker, a connection to it."""

    database: str
    replication_task_arn: str
    slot_name: str
    source_conn: Any = None


class DmsCdcEngine:
    """The DMS side of the cutover's write-blocked window (cutover.CdcEngine): prove every task applied
    past the final LSN, then stop them.

    The slot is the proof: DMS confirms a position in its slot only after applying the changes before
    it (it restarts from the slot after a failure, so confirming earlier would lose data). Once every
    slot's confirmed_flush_lsn >= final LSN nothing before it is in flight, which CDCIncomingChanges = 0
    would say only a minute or more later; the metric is read only for the record, while a slot lags.

    ``source_conn`` is any connection to the source server (slots are visible from every database);
    a link's own ``source_conn`` (to its database) lets the drain write its marker there.
    """

    name = "dms"

    def __init__(self, *, links: Iterable[DmsCdcDatabase], source_conn: Any = None, dms: Any = None,
                 cloudwatch: Any = None,
                 replication_instance_id: str | None = None, marker_schema: str | None = None,
                 poll_interval: float = 0.2, metric_interval: float = 15.0, stop_timeout: float = 300.0,
                 clock: Callable[[], float] = time.monotonic, sleep: Callable[[float], None] = time.sleep):
        self.links = list(links)
        if not self.links:
            raise DmsInputError("links: the engine needs at least one database's task and slot")
        for link in self.links:
            check_arn(link.replication_task_arn, "replication_task_arn", "task")
            check_slot_name(link.slot_name)
        if marker_schema is not None:
            check_pg_name(marker_schema, "marker_schema")
        self.source_conn = source_conn
        self.dms = dms
        self.cloudwatch = cloudwatch
        self.replication_instance_id = replication_instance_id
        self.marker_schema = marker_schema
        self.poll_interval = poll_interval
        self.metric_interval = metric_interval
        self.stop_timeout = stop_timeout
        self.clock = clock
        self.sleep = sleep
        self._owned: list[Any] = []

    def _status_conn(self, source_conn: Any = None) -> Any:
        conn = source_conn or self.source_conn or next((link.source_conn for link in self.links if link.source_conn),
                                                       None)
        if conn is None:
            raise DmsInputError("source_conn: the engine needs a connection to the source server")
        return conn

    def _marker_conn(self, link: DmsCdcDatabase, status_conn: Any) -> Any:
        if link.source_conn is not None:
            return link.source_conn
        info = getattr(status_conn, "info", None)
        return status_conn if info is not None and info.dbname == link.database else None

    def prepare(self, *, source_conn: Any = None, dms: Any = None) -> dict[str, Any]:
        """Before writes are blocked: every task is running and every slot exists."""
        dms = dms or self.dms
        if dms is None:
            raise DmsInputError("dms: prepare needs a DMS client")
        conn = self._status_conn(source_conn)
        result = {}
        for link in self.links:
            task = describe_task(dms, link.replication_task_arn)
            if task is None or task["Status"] != "running":
                status = task["Status"] if task else "missing"
                raise DmsError(f"database {link.database}: replication task {link.replication_task_arn} is "
                               f"{status}, not running{task_failure(task or {})}; CDC is not carrying changes")
            slot = require_slot(slot_position(conn, link.slot_name), link.slot_name)
            result[link.database] = {"task_status": task["Status"], "slot": link.slot_name,
                                     "confirmed_flush_lsn": slot["confirmed_flush_lsn"]}
        return result

    def drain(self, final_lsn: str | int | LSN, timeout: float, *, source_conn: Any = None,
              cloudwatch: Any = None) -> dict[str, Any]:
        """Wait until every slot's confirmed_flush_lsn reaches ``final_lsn``; DmsDrainTimeout after ``timeout`` s.

        With ``marker_schema``, a lagging database gets one marker change committed after the final LSN,
        so an idle source still gives DMS something to confirm.
        """
        final = LSN.parse(final_lsn, field="final_lsn")
        conn = self._status_conn(source_conn)
        cloudwatch = cloudwatch or self.cloudwatch
        started = self.clock()
        checks = 0
        markers: dict[str, str] = {}
        marker_errors: dict[str, str] = {}
        incoming: dict[str, float | None] = {}
        metric_read_at: float | None = None
        while True:
            checks += 1
            positions = slot_positions(conn, [link.slot_name for link in self.links])
            confirmed = {link.database: LSN(require_slot(positions.get(link.slot_name), link.slot_name)
                                            ["confirmed_flush_lsn"]) for link in self.links}
            behind = [link for link in self.links if confirmed[link.database] < final]
            if not behind:
                return {"drained": True, "proof": "slot", "final_lsn": str(final),
                        "confirmed": {db: str(lsn) for db, lsn in confirmed.items()}, "checks": checks,
                        "markers": markers, "marker_errors": marker_errors, "incoming_changes": incoming,
                        "waited_seconds": round(self.clock() - started, 3)}
            if self.marker_schema:
                for link in behind:
                    if link.database not in markers and link.database not in marker_errors:
                        self._write_marker(link, conn, final, markers, marker_errors)
            if cloudwatch is not None and self.replication_instance_id and \
                    (metric_read_at is None or self.clock() - metric_read_at >= self.metric_interval):
                for link in behind:
                    incoming[link.database] = self._incoming_changes(cloudwatch, link)
                metric_read_at = self.clock()
            if self.clock() - started >= timeout:
                lagging = "; ".join(
                    f"{link.database}: slot {link.slot_name} confirmed {confirmed[link.database]} "
                    f"({final - confirmed[link.database]} bytes behind), CDCIncomingChanges "
                    f"{incoming.get(link.database, 'unknown')}" for link in behind)
                notes = "".join(f" The drain marker was not written in {db} ({error})."
                                for db, error in marker_errors.items())
                raise DmsDrainTimeout(
                    f"DMS has not applied past the source's final LSN {final} within {timeout:g} s: {lagging}.{notes}"
                    " Check the tasks' CloudWatch logs; the cutover restores source writes (abort).")
            self.sleep(self.poll_interval)

    def _write_marker(self, link: DmsCdcDatabase, status_conn: Any, final: LSN, markers: dict[str, str],
                      errors: dict[str, str]) -> None:
        conn = self._marker_conn(link, status_conn)
        if conn is None:
            errors[link.database] = "no connection to this database was given"
            return
        try:
            markers[link.database] = str(write_drain_marker(conn, self.marker_schema, final))
        except psycopg.Error as exc:
            # The marker only speeds the proof up; without it the drain still waits for DMS.
            errors[link.database] = f"{type(exc).__name__}: {exc}".strip()

    def _incoming_changes(self, cloudwatch: Any, link: DmsCdcDatabase) -> float | None:
        metrics = cdc_metrics(cloudwatch, replication_instance_id=self.replication_instance_id,
                              task_resource_id=task_resource_id(link.replication_task_arn),
                              now=datetime.now(UTC), lookback_seconds=300)
        return metrics["incoming"][0][1] if metrics["incoming"] else None

    def stop(self, timeout: float | None = None, *, dms: Any = None) -> dict[str, Any]:
        """Stop every task (stop calls first, then one wait) until each is 'stopped'."""
        dms = dms or self.dms
        if dms is None:
            raise DmsInputError("dms: stop needs a DMS client")
        stopped = stop_tasks(dms, [link.replication_task_arn for link in self.links],
                             timeout=self.stop_timeout if timeout is None else timeout,
                             poll_interval=max(self.poll_interval, 0.5), clock=self.clock, sleep=self.sleep)
        return {link.database: stopped[link.replication_task_arn] for link in self.links}

    @classmethod
    def opening(cls, *, connect: Callable[[str], Any], tasks: Iterable[dict[str, str]], **kwargs: Any
                ) -> DmsCdcEngine:
        """An engine that owns one source connection per database, opened by ``connect(database)``.

        ``tasks``: ``[{"database", "replication_task_arn", "slot_name"}, ...]``; ``kwargs`` go to the
        constructor (``dms``, ``cloudwatch``, ``replication_instance_id``, ``marker_schema``, ...).
        Call ``close()`` after.
        """
        conns = []
        links = []
        try:
            for task in tasks:
                conn = connect(task["database"])
                conns.append(conn)
                links.append(DmsCdcDatabase(database=task["database"],
                                            replication_task_arn=task["replication_task_arn"],
                                            slot_name=task["slot_name"], source_conn=conn))
            engine = cls(links=links, **kwargs)
        except BaseException:
            for conn in conns:
                conn.close()
            raise
        engine._owned = conns
        return engine

    def close(self) -> None:
        for conn in self._owned:
            conn.close()
        self._owned = []

