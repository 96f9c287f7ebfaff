"""The cutover's critical section: block source writes, drain, stop CDC, finish the target, open it.

Three parts plug in, so other platforms and engines reuse the same section and its abort path:

- a write fence (``RoleFence`` here: role settings, NOLOGIN, REVOKE CONNECT, ended sessions; an AWS
  security-group fence plugs in) with block / unblock;
- a CDC engine (``NativeCdc`` here; DMS plugs in) with drain(final_lsn, timeout) / stop;
- a target opener (``LocalTargetOpener`` here; a DNS switch plugs in) with open.

``SourceDrain`` is the same for every fence: nothing in flight on the source, then its final LSN.

``run_cutover`` times and logs every step and returns the timeline. Any failure after writes are
blocked and before the target is open restores the source's writes exactly as they were and raises
``CutoverAborted`` naming the failed step.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol

import psycopg
from psycopg import sql
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb

from migration import sql as q
from migration.config import check_names
from migration.lsn import LSN
from migration.native_cdc import drop_subscription, slot_positions, subscription_state

log = logging.getLogger(__name__)

READ_ONLY_GUC = "default_transaction_read_only"
# Roles the managed services own; they are never fenced (and could not be).
RESERVED_ROLE_PREFIXES = ("pg_", "rds")


class CutoverError(RuntimeError):
    """A cutover step cannot go on; the message says why."""


class CutoverAborted(CutoverError):
    """The cutover stopped after blocking writes; ``timeline`` shows what ran, ``failed_step`` what failed."""

    def __init__(self, message: str, *, failed_step: str, timeline: dict[str, Any]):
        super().__init__(message)
        self.failed_step = failed_step
        self.timeline = timeline


class WriteFence(Protocol):
    """Keeps clients from writing to the source. May also define ``prepare()`` (checks, before blocking)
    and ``session_roles()`` (roles whose sessions the drain ends; None: every session but the kept ones).
    An undo named ``restore()`` is accepted as well as ``unblock()``."""

    name: str

    def block(self) -> Any: ...
    def unblock(self) -> Any: ...


class CdcEngine(Protocol):
    """Carries changes to the target. May also define ``prepare()`` (checks, before blocking)."""

    name: str

    def drain(self, final_lsn: LSN, timeout: float) -> dict[str, Any]: ...
    def stop(self) -> dict[str, Any]: ...


class TargetOpener(Protocol):
    name: str

    def open(self) -> dict[str, Any]: ...


Step = tuple[str, Callable[[], Any]]


# ---------------------------------------------------------------- the role fence

def _ident(name: str) -> sql.Identifier:
    return sql.Identifier(name)


def _grantee(grant: dict[str, Any]) -> sql.Composable:
    return sql.SQL("PUBLIC") if grant["public"] else sql.Identifier(grant["grantee"])


def _run_batch(conn: psycopg.Connection, statements: list[sql.Composable]) -> None:
    # One round trip for all of them: without parameters the statements go as one simple query.
    if statements:
        conn.execute(sql.SQL("; ").join(statements))


def _state_table_exists(conn: psycopg.Connection, control_schema: str) -> bool:
    table = sql.Identifier(control_schema, "cutover_state").as_string(conn)
    return conn.execute(q.load("cutover_state_exists"), {"table": table}).fetchone()[0]


def unblock_writes(conn: psycopg.Connection, control_schema: str, fence_id: str, *,
                   force: bool = False) -> dict[str, Any]:
    """Restore exactly what the fence ``fence_id`` changed, as recorded in ``<control_schema>.cutover_state``.

    Role settings and LOGIN come back as they were; CONNECT goes back to every grantee it was revoked
    from (with its grant option), and the CONNECT grants the fence added are revoked. One transaction;
    running it again restores nothing more. Once the cutover opened the target the source stays fenced
    (writes on both sides would split the data) unless ``force`` says the application is back on the source.
    """
    control_schema = check_names([control_schema], "unblock_writes", "control_schema")[0]
    if not _state_table_exists(conn, control_schema):
        return {"fence_id": fence_id, "restored": [], "note": "no cutover_state table: nothing was fenced"}
    opened = conn.execute(q.compose("cutover_state_target_open", schema=control_schema),
                          {"fence_id": fence_id}).fetchone()
    if opened and not force:
        log.info("The cutover %s opened the target %s: the source stays fenced", fence_id, opened[0])
        return {"fence_id": fence_id, "restored": [], "note": "the target is open; the source stays fenced"}
    restored: list[str] = []
    with conn.transaction():
        with conn.cursor(row_factory=dict_row) as cur:
            rows = cur.execute(q.compose("cutover_state_active", schema=control_schema), {"fence_id": fence_id}).fetchall()
        statements: list[sql.Composable] = []
        for row in rows:
            kind, obj, prev = row["kind"], row["object"], row["previous"]
            if kind == "role_read_only":
                if prev["value"] is None:
                    statements.append(q.compose("cutover_role_read_only_reset", role=obj))
                else:
                    statements.append(q.compose("cutover_role_read_only_set", role=obj, value=sql.Literal(prev["value"])))
            elif kind == "role_login":
                statements.append(q.compose("cutover_role_login", role=obj))
            elif kind == "database_connect":
                for grant in prev["revoked"]:
                    name = "cutover_grant_connect_grantable" if grant["grantable"] else "cutover_grant_connect"
                    statements.append(q.compose(name, database=obj, grantee=_grantee(grant)))
            elif kind == "connect_grant":
                statements.append(q.compose("cutover_revoke_connect", database=prev["database"],
                                            grantee=_ident(prev["role"])))
            else:
                continue
            restored.append(f"{kind}:{obj}")
        _run_batch(conn, statements)
        conn.execute(q.compose("cutover_state_restored", schema=control_schema), {"fence_id": fence_id})
    log.info("Source writes restored for fence %s: %s", fence_id, restored or "nothing was fenced")
    return {"fence_id": fence_id, "restored": restored}


@dataclass
class RoleFence:
    """Blocks writes on the source by roles: no client can lift it, and it is undone exactly.

    ``roles`` are the application roles to fence; None fences every role that can log in except the
    kept ones (the replication role, the role running the cutover, ``exclude_roles`` and the managed
    service's own ``pg_*``/``rds*`` roles). ``conn`` is an autocommit connection to the source's
    control database, where ``<control_schema>.cutover_state`` records every change.
    """

    conn: psycopg.Connection
    fence_id: str
    databases: Sequence[str]
    control_schema: str
    replication_role: str
    roles: Sequence[str] | None = None
    exclude_roles: Sequence[str] = ()
    name: str = "roles"
    fenced: list[str] = field(default_factory=list, init=False)

    def __post_init__(self) -> None:
        self.databases = check_names(list(self.databases), "RoleFence", "databases")
        self.control_schema = check_names([self.control_schema], "RoleFence", "control_schema")[0]
        self.replication_role = check_names([self.replication_role], "RoleFence", "replication_role")[0]
        self.exclude_roles = check_names(list(self.exclude_roles), "RoleFence", "exclude_roles", required=False)
        if self.roles is not None:
            self.roles = check_names(list(self.roles), "RoleFence", "roles", required=False) or None
        if not isinstance(self.fence_id, str) or not self.fence_id:
            raise ValueError("RoleFence: fence_id: a non-empty id derived from the migration is required")

    # -- planning

    def _roles(self) -> dict[str, dict[str, Any]]:
        with self.conn.cursor(row_factory=dict_row) as cur:
            return {r["role"]: dict(r) for r in cur.execute(q.load("cutover_roles")).fetchall()}

    def _databases(self, keep: list[str]) -> list[dict[str, Any]]:
        with self.conn.cursor(row_factory=dict_row) as cur:
            return [dict(r) for r in cur.execute(q.load("cutover_databases"),
                                                 {"databases": list(self.databases), "keep": keep}).fetchall()]

    def _active(self) -> list[dict[str, Any]]:
        with self.conn.cursor(row_factory=dict_row) as cur:
            return [dict(r) for r in cur.execute(q.compose("cutover_state_active", schema=self.control_schema),
                                                 {"fence_id": self.fence_id}).fetchall()]

    def _plan(self, roles: dict[str, dict[str, Any]], active: list[dict[str, Any]]) -> tuple[list[str], list[str]]:
        keep = sorted({self.replication_role, *self.exclude_roles, *(r for r, v in roles.items() if v["is_me"])}
                      & set(roles))
        already = {row["object"] for row in active if row["kind"] in ("role_login", "role_read_only")}
        if self.roles is not None:
            missing = [r for r in self.roles if r not in roles]
            if missing:
                raise CutoverError(f"roles: {missing} do not exist on the source")
            kept = [r for r in self.roles if r in keep]
            if kept:
                raise CutoverError(f"roles: {kept} must stay able to connect (replication role, the role running "
                                   "the cutover, or exclude_roles) and cannot be fenced")
            fenced = sorted(set(self.roles) | already)
        else:
            fenced = sorted(
                {r for r, v in roles.items() if v["can_login"] and r not in keep and not r.startswith(RESERVED_ROLE_PREFIXES)}
                | already)
        return fenced, keep

    def prepare(self) -> dict[str, Any]:
        """Check the names and create the state table; changes no role or privilege."""
        self.conn.execute(q.compose("cutover_state_table", schema=self.control_schema))
        roles = self._roles()
        if self.replication_role not in roles:
            raise CutoverError(f"replication_role: role {self.replication_role!r} does not exist on the source")
        fenced, keep = self._plan(roles, self._active())
        found = {d["database"] for d in self._databases(keep)}
        missing = [d for d in self.databases if d not in found]
        if missing:
            raise CutoverError(f"databases: {missing} do not exist on the source")
        self.fenced = fenced
        return {"fence_id": self.fence_id, "roles": fenced, "kept": keep, "databases": list(self.databases)}

    # -- the fence

    def block(self) -> dict[str, Any]:
        """Fence in one transaction (recording the previous state first), then end the fenced roles' sessions."""
        with self.conn.transaction():
            roles = self._roles()
            active = self._active()
            fenced, keep = self._plan(roles, active)
            records: list[dict[str, Any]] = []
            statements: list[sql.Composable] = []
            for role in fenced:
                current = roles[role]
                records.append({"kind": "role_read_only", "object": role, "previous": {"value": current["read_only"]}})
                statements.append(q.compose("cutover_role_read_only_on", role=role))
                if current["can_login"]:
                    records.append({"kind": "role_login", "object": role, "previous": {"can_login": True}})
                    statements.append(q.compose("cutover_role_nologin", role=role))
            could_connect: dict[str, set[str]] = {}
            for db in self._databases(keep):
                could_connect[db["database"]] = set(db["keep_can_connect"])
                revoke = [g for g in db["connect_grants"] if g["public"] or g["grantee"] not in keep]
                direct = {g["grantee"] for g in db["connect_grants"] if not g["public"]}
                if revoke:
                    records.append({"kind": "database_connect", "object": db["database"],
                                    "previous": {"datacl": db["datacl"], "owner": db["owner"], "revoked": revoke}})
                    unique = {(g["public"], g["grantee"]): g for g in revoke}.values()
                    grantees = sql.SQL(", ").join(_grantee(g) for g in unique)
                    statements.append(q.compose("cutover_revoke_connect", database=db["database"], grantee=grantees))
                # Kept roles that could connect only through PUBLIC or a fenced role get their own grant.
                for role in db["keep_can_connect"]:
                    if role not in direct and not roles[role]["superuser"]:
                        records.append({"kind": "connect_grant", "object": json.dumps([db["database"], role]),
                                        "previous": {"database": db["database"], "role": role}})
                        statements.append(q.compose("cutover_grant_connect", database=db["database"], grantee=role))
            self.conn.execute(q.compose("cutover_state_record", schema=self.control_schema),
                              {"fence_id": self.fence_id, "records": Jsonb(records)})
            self.conn.execute(q.compose("cutover_state_note", schema=self.control_schema),
                              {"fence_id": self.fence_id, "kind": "fence", "object": "roles",
                               "previous": Jsonb({"roles": fenced, "kept": keep, "databases": list(self.databases),
                                                  "replication_role": self.replication_role})})
            _run_batch(self.conn, statements)
            self._verify(keep, could_connect)
        self.fenced = fenced
        with self.conn.cursor(row_factory=dict_row) as cur:
            ended = cur.execute(q.load("cutover_terminate"), {"roles": fenced}).fetchall()
        log.info("Writes blocked: %d roles fenced, %d sessions ended", len(fenced), len(ended))
        return {"roles": fenced, "kept": keep, "changes": len(records), "sessions_ended": len(ended)}

    def _verify(self, keep: list[str], could_connect: dict[str, set[str]]) -> None:
        # Fail closed: a CONNECT grant this role could not revoke (another grantor's) leaves a way in.
        for db in self._databases(keep):
            left = [g["grantee"] for g in db["connect_grants"] if g["public"] or g["grantee"] not in keep]
            if left:
                raise CutoverError(
                    f"database {db['database']}: CONNECT is still granted to {left} after REVOKE (granted by another "
                    "role); revoke it as that grantor, or fence with another strategy")
            lost = sorted(could_connect.get(db["database"], set()) - set(db["keep_can_connect"]))
            if lost:
                raise CutoverError(f"database {db['database']}: the fence would lock out {lost}, which must stay "
                                   "able to connect; nothing was changed")

    def session_roles(self) -> list[str]:
        return list(self.fenced)

    def unblock(self) -> dict[str, Any]:
        return unblock_writes(self.conn, self.control_schema, self.fence_id)


# ---------------------------------------------------------------- draining the source

@dataclass
class SourceDrain:
    """PostgreSQL side of the drain, whatever the fence: nothing in flight on the source, then its final LSN.

    Quiet means: no session left that must end, no open transaction that has written and no prepared
    transaction in the migrated databases (the ``allowed_roles``, i.e. the replication role, excepted).
    The final LSN is the flush position read right after a synchronous commit of a marker row, so
    every commit made before the fence is at or below it even where commits are asynchronous.
    """

    conn: psycopg.Connection
    databases: Sequence[str]
    control_schema: str
    fence_id: str
    allowed_roles: Sequence[str]
    poll_interval_s: float = 0.05

    def __post_init__(self) -> None:
        self.databases = check_names(list(self.databases), "SourceDrain", "databases")
        self.control_schema = check_names([self.control_schema], "SourceDrain", "control_schema")[0]
        self.allowed_roles = check_names(list(self.allowed_roles), "SourceDrain", "allowed_roles")

    def prepare(self) -> dict[str, Any]:
        self.conn.execute(q.compose("cutover_state_table", schema=self.control_schema))
        self.conn.execute(q.load("cutover_session"))
        return {"databases": list(self.databases), "allowed_roles": list(self.allowed_roles)}

    def drain(self, timeout_s: float, end_sessions_of: Sequence[str] | None = None) -> LSN:
        deadline = time.monotonic() + timeout_s
        params = {"end_all": end_sessions_of is None, "end_sessions_of": list(end_sessions_of or []),
                  "databases": list(self.databases), "allowed": list(self.allowed_roles)}
        while True:
            with self.conn.cursor(row_factory=dict_row) as cur:
                state = cur.execute(q.load("cutover_drain_check"), params).fetchone()
            if not (state["sessions_ended"] or state["open_transactions"] or state["prepared_transactions"]):
                break
            if time.monotonic() > deadline:
                raise CutoverError(
                    f"the source did not drain within {timeout_s:g} s: {state['sessions_ended']} sessions still "
                    f"had to be ended, open transactions {state['open_transactions']}, prepared transactions "
                    f"{state['prepared_transactions']} (finish those with COMMIT PREPARED or ROLLBACK PREPARED)")
            time.sleep(self.poll_interval_s)
        self.conn.execute(q.compose("cutover_state_note", schema=self.control_schema),
                          {"fence_id": self.fence_id, "kind": "drain", "object": "final",
                           "previous": Jsonb({"databases": list(self.databases)})})
        return LSN(self.conn.execute(q.load("cutover_flush_lsn")).fetchone()[0])


# ---------------------------------------------------------------- native CDC

@dataclass(frozen=True)
class NativeLink:
    """One database's replication: the slot on the source, the subscription on the target."""

    database: str
    slot_name: str
    subscription: str
    target_conn: psycopg.Connection


@dataclass
class NativeCdc:
    """Logical replication as the cutover's CDC engine: applied means the slot confirmed past the LSN."""

    source_conn: psycopg.Connection
    links: Sequence[NativeLink]
    poll_interval_s: float = 0.05
    name: str = "native"

    def prepare(self) -> dict[str, Any]:
        slots = slot_positions(self.source_conn, [link.slot_name for link in self.links])
        for link in self.links:
            if link.slot_name not in slots:
                raise CutoverError(f"database {link.database}: slot {link.slot_name} does not exist on the source")
            state = subscription_state(link.target_conn, link.subscription)
            if state is None or not state["enabled"]:
                raise CutoverError(f"database {link.database}: subscription {link.subscription} is "
                                   f"{'missing' if state is None else 'disabled'} on the target; CDC is not running")
        return {link.database: {"slot": link.slot_name, "confirmed_flush_lsn": slots[link.slot_name]["confirmed_flush_lsn"]}
                for link in self.links}

    def drain(self, final_lsn: LSN, timeout: float) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        names = [link.slot_name for link in self.links]
        while True:
            slots = slot_positions(self.source_conn, names)
            behind = {name: slots[name]["confirmed_flush_lsn"] if name in slots else None for name in names
                      if name not in slots or slots[name]["confirmed_flush_lsn"] is None
                      or LSN(slots[name]["confirmed_flush_lsn"]) < final_lsn}
            if not behind:
                return {"final_lsn": str(final_lsn),
                        "confirmed": {name: slots[name]["confirmed_flush_lsn"] for name in names}}
            if time.monotonic() > deadline:
                raise CutoverError(f"CDC did not apply past the source's final LSN {final_lsn} within {timeout:g} s; "
                                   f"slots still behind (confirmed position): {behind}")
            time.sleep(self.poll_interval_s)

    def stop(self) -> dict[str, Any]:
        dropped = {link.database: drop_subscription(link.target_conn, link.subscription) for link in self.links}
        return {"dropped_subscriptions": dropped}


# ---------------------------------------------------------------- opening the target

@dataclass
class LocalTargetOpener:
    """Local platform: record where the databases now live (the source's cutover_state and the timeline)."""

    conn: psycopg.Connection
    control_schema: str
    fence_id: str
    endpoint: dict[str, Any]
    name: str = "local"

    def open(self) -> dict[str, Any]:
        self.conn.execute(q.compose("cutover_state_note", schema=self.control_schema),
                          {"fence_id": self.fence_id, "kind": "target", "object": "connection",
                           "previous": Jsonb(self.endpoint)})
        return dict(self.endpoint)


# ---------------------------------------------------------------- the critical section

class _Timeline:
    def __init__(self) -> None:
        self.steps: list[dict[str, Any]] = []
        self.current: str | None = None

    def run(self, name: str, fn: Callable[[], Any]) -> Any:
        self.current = name
        started_at = datetime.now(UTC)
        start = time.monotonic()
        entry = {"step": name, "started_at": started_at.isoformat(), "_start": start}
        try:
            detail = fn()
        except BaseException as exc:
            entry.update(seconds=round(time.monotonic() - start, 6), ended_at=datetime.now(UTC).isoformat(), ok=False,
                         error=f"{type(exc).__name__}: {exc}")
            self.steps.append(entry)
            log.error("Cutover step %s failed after %.3f s: %s", name, entry["seconds"], exc)
            raise
        end = time.monotonic()
        entry.update(seconds=round(end - start, 6), ended_at=datetime.now(UTC).isoformat(), ok=True, _end=end,
                     detail=_jsonable(detail))
        self.steps.append(entry)
        log.info("Cutover step %s done in %.3f s: %s", name, entry["seconds"], entry["detail"])
        return detail

    def step(self, name: str) -> dict[str, Any] | None:
        return next((s for s in self.steps if s["step"] == name), None)

    def public_steps(self) -> list[dict[str, Any]]:
        return [{k: v for k, v in s.items() if not k.startswith("_")} for s in self.steps]


def _jsonable(value: Any) -> Any:
    if isinstance(value, LSN):
        return str(value)
    return json.loads(json.dumps(value, default=str)) if value is not None else None


def _optional(obj: Any, method: str) -> Callable[[], Any]:
    return getattr(obj, method, None) or (lambda: None)


def run_cutover(*, fence: WriteFence, drain: SourceDrain, cdc: CdcEngine, opener: TargetOpener,
                after_stop: Sequence[Step] = (), drain_timeout_s: float = 60.0,
                apply_timeout_s: float | None = None) -> dict[str, Any]:
    """The critical section, each step timed and logged; returns the timeline.

    Order: block writes -> drain the source (no open or prepared transactions; final LSN) -> CDC
    applied past the final LSN -> stop CDC -> ``after_stop`` steps, e.g. sequence sync and trigger
    enabling, as ``(name, callable)`` -> open the target. The ``prepare`` checks run before writes are
    blocked, so a wrong name fails with the source untouched. Any failure from blocking until the
    target is open restores source writes and raises CutoverAborted naming the failed step.
    """
    timeline = _Timeline()
    timeline.run("prepare_fence", _optional(fence, "prepare"))
    timeline.run("prepare_drain", drain.prepare)
    timeline.run("prepare_cdc", _optional(cdc, "prepare"))
    undo = getattr(fence, "unblock", None) or fence.restore
    final_lsn: LSN | None = None
    try:
        timeline.run("block_writes", fence.block)
        roles = _optional(fence, "session_roles")()
        final_lsn = timeline.run("drain_source", lambda: drain.drain(drain_timeout_s, roles))
        timeline.run("cdc_applied", lambda: cdc.drain(final_lsn, apply_timeout_s or drain_timeout_s))
        timeline.run("stop_cdc", cdc.stop)
        for name, fn in after_stop:
            timeline.run(name, fn)
        timeline.run("open_target", opener.open)
    except BaseException as exc:
        failed = timeline.current or "?"
        stop = timeline.step("stop_cdc")
        hint = (" CDC had already been stopped: create the subscription again (it resumes from the slot's confirmed "
                "position) before the next attempt." if stop and stop["ok"] else "")
        try:
            timeline.run("restore_writes", undo)
        except BaseException as undo_exc:
            result = _summary(timeline, fence, cdc, final_lsn, status="aborted", failed_step=failed)
            raise CutoverAborted(
                f"cutover aborted at step {failed!r}: {exc}. Restoring source writes FAILED too ({undo_exc}); the "
                f"source is still fenced: run UnblockSourceWritesOperator (unblock_writes) to restore them.{hint}",
                failed_step=failed, timeline=result) from exc
        result = _summary(timeline, fence, cdc, final_lsn, status="aborted", failed_step=failed)
        raise CutoverAborted(
            f"cutover aborted at step {failed!r}: {exc}. Source writes were restored exactly as they were "
            f"(blocked for {result['write_blocked_seconds']:.3f} s).{hint}",
            failed_step=failed, timeline=result) from exc
    return _summary(timeline, fence, cdc, final_lsn, status="completed")


def _summary(timeline: _Timeline, fence: WriteFence, cdc: CdcEngine, final_lsn: LSN | None, *, status: str,
             failed_step: str | None = None) -> dict[str, Any]:
    blocked = timeline.step("block_writes")
    opened = timeline.step("open_target") if status == "completed" else timeline.step("restore_writes")
    end = opened.get("_end") if opened else None
    return {
        "status": status,
        "failed_step": failed_step,
        "fence": fence.name,
        "cdc": cdc.name,
        "final_lsn": str(final_lsn) if final_lsn is not None else None,
        "writes_blocked_at": blocked["started_at"] if blocked else None,
        "target_open_at": opened["ended_at"] if opened and status == "completed" else None,
        "writes_restored_at": opened["ended_at"] if opened and status == "aborted" and opened["ok"] else None,
        "write_blocked_seconds": round(end - blocked["_start"], 6) if blocked and end else None,
        "durations": {s["step"]: s["seconds"] for s in timeline.steps},
        "steps": timeline.public_steps(),
    }
