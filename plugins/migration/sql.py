"""The one SQL loader: every statement lives in include/sql/<name>.sql."""

from __future__ import annotations

from functools import cache
from pathlib import Path

from psycopg import sql

SQL_DIR = Path(__file__).resolve().parents[2] / "include" / "sql"


@cache
def load(name: str) -> str:
    """Text of include/sql/<name>.sql."""
    path = SQL_DIR / f"{name}.sql"
    if not path.is_file():
        raise FileNotFoundError(f"SQL file {path} does not exist")
    return path.read_text()


def compose(name: str, **identifiers: str | sql.Composable) -> sql.Composed:
    """include/sql/<name>.sql with ``{placeholders}`` filled by quoted identifiers.

    Values are never formatted in: they go as bind parameters (``%(name)s``) at execute time.
    A plain string is quoted as an identifier; pass a psycopg ``sql.Composable`` for anything else.
    """
    filled = {
        key: value if isinstance(value, sql.Composable) else sql.Identifier(value)
        for key, value in identifiers.items()
    }
    return sql.SQL(load(name)).format(**filled)
