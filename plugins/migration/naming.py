"""Names and ids: every name a migration creates, derived from the migration id and database (never
from time), and the rules every name and id it is given must follow.

Derived names make reruns find what an earlier try created instead of creating it again. The rules are
here once; each layer raises its own error type with the field named (``config.ConfigError``,
``ValueError``, ``dms.errors.DmsInputError``).
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence

_PG_MAX = 63

# ---------------------------------------------------------------------------------------------
# Rules for names and ids that are given
# ---------------------------------------------------------------------------------------------

PG_NAME_MAX_BYTES = _PG_MAX
MIGRATION_ID_RE = re.compile(r"^[a-z][a-z0-9_]{0,39}$")
CONN_ID_RE = re.compile(r"^[A-Za-z0-9_.-]{1,250}$")
AWS_ACCOUNT_ID_RE = re.compile(r"^\d{12}$")
# A replication slot name: PostgreSQL allows only lower-case letters, digits and underscores.
SLOT_NAME_RE = re.compile(r"^[a-z0-9_]{1,63}$")
_AWS_IDENTIFIER_RE = re.compile(r"^[A-Za-z][A-Za-z0-9-]*$")


def pg_name_problem(value: object) -> str | None:
    """Why ``value`` is not a PostgreSQL name, or None. Any characters are allowed (names are always
    quoted); 1 to 63 bytes, no NUL."""
    if not isinstance(value, str) or not value:
        return f"expected a non-empty name, got {value!r}"
    if "\x00" in value:
        return f"a name cannot contain a NUL character, got {value!r}"
    if len(value.encode()) > PG_NAME_MAX_BYTES:
        return f"{value!r} is longer than PostgreSQL's {PG_NAME_MAX_BYTES}-byte name limit"
    return None


def validate_identifier(value: object, *, field: str) -> str:
    """A PostgreSQL identifier as given (any characters), or ValueError naming the field."""
    problem = pg_name_problem(value)
    if problem or not isinstance(value, str):
        raise ValueError(f"{field}: {problem}")
    return value


def validate_schemas(schemas: object, *, field: str = "schemas") -> list[str]:
    """A non-empty list of schema names without duplicates, or ValueError naming the field."""
    if isinstance(schemas, str) or not isinstance(schemas, Sequence) or not schemas:
        raise ValueError(f"{field}: expected a non-empty list of schema names, got {schemas!r}")
    names = [validate_identifier(name, field=f"{field}[{i}]") for i, name in enumerate(schemas)]
    if len(set(names)) != len(names):
        raise ValueError(f"{field}: schema names repeat in {names!r}")
    return names


def validate_slot_name(slot_name: object, *, field: str = "slot_name") -> str:
    if not isinstance(slot_name, str) or not SLOT_NAME_RE.match(slot_name):
        raise ValueError(f"{field}: a replication slot name is 1-63 characters of a-z, 0-9 and _, got {slot_name!r}")
    return slot_name


def is_aws_identifier(value: object, *, max_length: int) -> bool:
    """RDS and DMS identifiers: a letter, then letters, digits and single hyphens, not ending in a hyphen."""
    return (isinstance(value, str) and bool(_AWS_IDENTIFIER_RE.match(value)) and "--" not in value
            and not value.endswith("-") and len(value) <= max_length)


# ---------------------------------------------------------------------------------------------
# Names a migration creates
# ---------------------------------------------------------------------------------------------


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
