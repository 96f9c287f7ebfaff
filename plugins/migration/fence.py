"""The role fence: blocks writes on the source's migrated databases by roles, and its exact undo.

Part of the cutover's critical section (migration.cutover): ``RoleFence`` is its write fence on any
PostgreSQL server where the migration's login may change roles' settings and database privileges.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import psycopg
from psycopg import sql
from psycopg.rows import dict_row

from migration import sql as sqlfiles
from migration.config import check_names
from migration.cutover import CutoverError
from migration.journal import CutoverJournal

log = logging.getLogger(__name__)

# Roles the managed services own; they are never fenced (and could not be).
RESERVED_ROLE_PREFIXES = ("pg_", "rds")


def _grantee(grant: dict[str, Any]) -> sql.Composable:
    return sql.SQL("PUBLIC") if grant["public"] else sql.Identifier(grant["grantee"])


def _run_batch(conn: psycopg.Connection, statements: list[sql.Composable]) -> None:
    # One round trip for all of them: without parameters the statements go as one simple query.
    if statements:
        conn.execute(sql.SQL("; ").join(statements))


def restore_role_fence(conn: psycopg.Connection, records: Sequence[dict[str, Any]]) -> list[str]:
    """Put back what the role fence changed (``{kind, object, previous}`` journal records), in one transaction.

    Settings come back as they were in each database; CONNECT goes back to every grantee it was revoked
    from (with its grant option), and the CONNECT grants the fence added are revoked. Restoring a record
    whose change was never made (a worker died in between) sets what is already there.
    """
    statements: list[sql.Composable] = []
    restored: list[str] = []
    for record in records:
        kind, prev = record["kind"], record["previous"]
        if kind == "role_read_only":
            role, database = prev["role"], prev["database"]
            if prev["value"] is None:
                statements.append(sqlfiles.compose("cutover_role_read_only_reset", role=role, database=database))
            else:
                statements.append(sqlfiles.compose("cutover_role_read_only_set", role=role, database=database,
                                                   value=sql.Literal(prev["value"])))
        elif kind == "database_connect":
            for grant in prev["revoked"]:
                statements.append(sqlfiles.compose(
                    "database_grant", privilege=sql.SQL("CONNECT"), database=prev["database"], grantee=_grantee(grant),
                    grant_option=sql.SQL(" WITH GRANT OPTION" if grant["grantable"] else "")))
        elif kind == "connect_grant":
            statements.append(sqlfiles.compose("cutover_revoke_connect", database=prev["database"],
                                               grantee=sql.Identifier(prev["role"])))
        else:
            continue
        restored.append(f"{kind}:{record['object']}")
    if statements:
        with conn.transaction():
            _run_batch(conn, statements)
    return restored


@dataclass
class RoleFence:
    """Blocks writes on the source's migrated databases by roles; no client can lift it, and it is undone exactly.

    The fenced roles are ``roles`` and every role that is a member of one of them, at any depth (an
    application usually logs in as a member of a group role). With ``roles`` None it is every role that
    can log in, except the kept ones: the replication role, the role running the cutover, ``exclude_roles``
    and the managed service's own ``pg_*``/``rds*`` roles. In each migrated database only:

    - new sessions of the fenced roles and of the kept ones (the role running the cutover,
      ``exclude_roles``; not a separate replication role) start read-only
      (``ALTER ROLE … IN DATABASE … SET default_transaction_read_only``);
    - CONNECT is revoked from everyone but the kept roles (PUBLIC included);
    - every client session but the cutover's own (``keep_pids``) is ended.

    Other databases on the same server are not touched, so two migrations that share a source and its
    roles do not interfere. Each change is recorded in the run's journal before it is made.
    """

    conn: psycopg.Connection
    journal: CutoverJournal
    databases: Sequence[str]
    replication_role: str
    roles: Sequence[str] | None = None
    exclude_roles: Sequence[str] = ()
    keep_pids: Sequence[int] = ()
    name: str = "roles"
    fenced: list[str] = field(default_factory=list, init=False)
    ended: list[dict[str, Any]] = field(default_factory=list, init=False)

    def __post_init__(self) -> None:
        self.databases = check_names(list(self.databases), "RoleFence", "databases")
        self.replication_role = check_names([self.replication_role], "RoleFence", "replication_role")[0]
        self.exclude_roles = check_names(list(self.exclude_roles), "RoleFence", "exclude_roles", required=False)
        if self.roles is not None:
            self.roles = check_names(list(self.roles), "RoleFence", "roles", required=False) or None

    # -- planning

    def _roles(self) -> dict[str, dict[str, Any]]:
        with self.conn.cursor(row_factory=dict_row) as cur:
            return {r["role"]: dict(r) for r in cur.execute(sqlfiles.load("cutover_roles"),
                                                            {"databases": list(self.databases)}).fetchall()}

    def _databases(self, keep: list[str]) -> list[dict[str, Any]]:
        with self.conn.cursor(row_factory=dict_row) as cur:
            return [dict(r) for r in cur.execute(sqlfiles.load("cutover_databases"),
                                                 {"databases": list(self.databases), "keep": keep}).fetchall()]

    def _plan(self, roles: dict[str, dict[str, Any]]) -> tuple[list[str], list[str]]:
        keep = sorted({self.replication_role, *self.exclude_roles, *(r for r, v in roles.items() if v["is_me"])}
                      & set(roles))
        if self.roles is not None:
            missing = [r for r in self.roles if r not in roles]
            if missing:
                raise CutoverError(f"roles: {missing} do not exist on the source")
            kept = [r for r in self.roles if r in keep]
            if kept:
                raise CutoverError(f"roles: {kept} must stay able to connect (replication role, the role running "
                                   "the cutover, or exclude_roles) and cannot be fenced")
            fenced = set(self.roles)
            members: dict[str, list[str]] = {}
            for role, row in roles.items():
                for group in row["member_of"]:
                    members.setdefault(group, []).append(role)
            todo = list(fenced)
            while todo:
                for member in members.get(todo.pop(), []):
                    if member not in fenced:
                        fenced.add(member)
                        todo.append(member)
            kept = sorted(fenced & set(keep))
            if kept:
                raise CutoverError(f"roles: {kept} are members of the fenced roles {list(self.roles)} but must stay "
                                   "able to connect (replication role, the role running the cutover, or "
                                   "exclude_roles); take them out of those groups or fence with other roles")
        else:
            fenced = {r for r, v in roles.items()
                      if v["can_login"] and r not in keep and not r.startswith(RESERVED_ROLE_PREFIXES)}
        return sorted(fenced), keep

    def prepare(self) -> dict[str, Any]:
        """Check the names and plan the fence; changes nothing."""
        roles = self._roles()
        if self.replication_role not in roles:
            raise CutoverError(f"replication_role: role {self.replication_role!r} does not exist on the source")
        fenced, keep = self._plan(roles)
        found = {d["database"] for d in self._databases(keep)}
        missing = [d for d in self.databases if d not in found]
        if missing:
            raise CutoverError(f"databases: {missing} do not exist on the source")
        self.fenced = fenced
        return {"roles": fenced, "kept": keep, "databases": list(self.databases)}

    # -- the fence

    def block(self) -> dict[str, Any]:
        """Record every change in the journal, make them all in one transaction, then end every session."""
        roles = self._roles()
        fenced, keep = self._plan(roles)
        # Roles that keep CONNECT start read-only too (the migration's own login, exclude_roles): a kept
        # login cannot write by default. Only the replication role, when it is another login, is left as is.
        kept_logins = {r for r in keep if r != self.replication_role or roles[r]["is_me"]}
        records: list[dict[str, Any]] = []
        statements: list[sql.Composable] = []
        for role in sorted(set(fenced) | kept_logins):
            for database in self.databases:
                previous = roles[role]["read_only_in"].get(database)
                records.append({"kind": "role_read_only", "object": json.dumps([role, database]),
                                "previous": {"role": role, "database": database, "value": previous}})
                statements.append(sqlfiles.compose("cutover_role_read_only_on", role=role, database=database))
        could_connect: dict[str, set[str]] = {}
        for db in self._databases(keep):
            could_connect[db["database"]] = set(db["keep_can_connect"])
            revoke = [g for g in db["connect_grants"] if g["public"] or g["grantee"] not in keep]
            direct = {g["grantee"] for g in db["connect_grants"] if not g["public"]}
            if revoke:
                records.append({"kind": "database_connect", "object": db["database"],
                                "previous": {"database": db["database"], "datacl": db["datacl"],
                                             "owner": db["owner"], "revoked": revoke}})
                unique = {(g["public"], g["grantee"]): g for g in revoke}.values()
                statements.append(sqlfiles.compose("cutover_revoke_connect", database=db["database"],
                                                   grantee=sql.SQL(", ").join(_grantee(g) for g in unique)))
            # Kept roles that could connect only through PUBLIC or a fenced role get their own grant.
            for role in db["keep_can_connect"]:
                if role not in direct and not roles[role]["superuser"]:
                    records.append({"kind": "connect_grant", "object": json.dumps([db["database"], role]),
                                    "previous": {"database": db["database"], "role": role}})
                    statements.append(sqlfiles.compose("database_grant", privilege=sql.SQL("CONNECT"),
                                                       database=db["database"], grantee=role, grant_option=sql.SQL("")))
        # Recorded (durably, on the target) before anything changes: an undo never misses a change.
        self.journal.record_fence(records)
        with self.conn.transaction():
            _run_batch(self.conn, statements)
            self._verify(keep, could_connect)
        self.fenced = fenced
        with self.conn.cursor(row_factory=dict_row) as cur:
            self.ended = [dict(r) for r in cur.execute(sqlfiles.load("cutover_terminate"), {
                "databases": list(self.databases), "keep_pids": list(self.keep_pids)}).fetchall()]
        log.info("Writes blocked in %s: %d roles fenced, %d sessions ended", list(self.databases), len(fenced),
                 len(self.ended))
        return {"roles": fenced, "kept": keep, "changes": len(records), "sessions_ended": len(self.ended)}

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

    def unblock(self) -> dict[str, Any]:
        state = self.journal.read()
        restored = restore_role_fence(self.conn, [r for r in state.fence_records if r["kind"] != "security_group"])
        self.journal.mark_restored()
        return {"restored": restored}
