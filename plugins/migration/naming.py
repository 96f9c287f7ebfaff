"""Every name a migration creates, derived from the migration id and database (never from time).

Derived names make reruns find what an earlier try created instead of creating it again.
"""

from __future__ import annotations

import hashlib
import re

_PG_MAX = 63


def _fit(name: str, limit: int, sep: str = "_") -> str:
    """Cut a name to ``limit`` characters, keeping it unique with a short hash of the whole."""
    if len(name) <= limit:
        return name
    digest = hashlib.sha1(name.encode()).hexdigest()[:8]
    return f"{name[: limit - 9].rstrip(sep)}{sep}{digest}"


def _slug(text: str, allowed: str = r"a-z0-9_", sep: str = "_") -> str:
    slug = re.sub(rf"[^{allowed}]+", sep, text.lower()).strip(sep)
    return slug or "db"


def _pg_name(kind: str, migration_id: str, database: str) -> str:
    # Database names may hold any character; the hash keeps two databases that slug alike apart.
    db = _slug(database)
    if db != database:
        db = f"{db}_{hashlib.sha1(database.encode()).hexdigest()[:6]}"
    return _fit(f"{kind}_{migration_id}_{db}", _PG_MAX)


def slot_name(migration_id: str, database: str) -> str:
    """Logical replication slot on the source, one per database."""
    return _pg_name("mig", migration_id, database)


def publication_name(migration_id: str, database: str) -> str:
    return _pg_name("migpub", migration_id, database)


def subscription_name(migration_id: str, database: str) -> str:
    return _pg_name("migsub", migration_id, database)


def aws_name(migration_id: str, *parts: str, limit: int = 63) -> str:
    """AWS identifiers: letters, digits and single hyphens, starting with a letter."""
    raw = "-".join([migration_id, *parts])
    name = re.sub(r"-{2,}", "-", _slug(raw, r"a-z0-9", "-"))
    if not name[0].isalpha():
        name = f"m-{name}"
    return _fit(name, limit, "-").strip("-")


def dms_task_id(migration_id: str, database: str) -> str:
    return aws_name(migration_id, database, "cdc", limit=255)


def dms_endpoint_id(migration_id: str, database: str, side: str) -> str:
    return aws_name(migration_id, database, side, limit=255)


def dms_instance_id(migration_id: str) -> str:
    return aws_name(migration_id, "repl", limit=63)


def ram_share_name(migration_id: str) -> str:
    return aws_name(migration_id, "clone-share", limit=255)


def snapshot_id(migration_id: str, stage: str) -> str:
    return aws_name(migration_id, stage, limit=255)
