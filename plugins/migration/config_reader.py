"""Reading a migration's YAML and a run's conf: the mapping reader that names the field of every error.

``migration.config`` builds the config model with it; ``ConfigError`` and ``check_names`` are imported
from there by the rest of the package.
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any

from migration.naming import pg_name_problem


class ConfigError(ValueError):
    """A config or run-conf value is wrong; the message names the file, the field and what is expected."""

    def __init__(self, source: str, field_path: str, message: str):
        self.source = source
        self.field_path = field_path
        super().__init__(f"{source}: {field_path}: {message}")


class Reader:
    """Reads one mapping, remembering the dotted path for error messages and refusing unknown keys."""

    def __init__(self, source: str, data: Any, path: str):
        if data is None:
            data = {}
        if not isinstance(data, dict):
            raise ConfigError(source, path or "(top level)", f"expected a mapping, got {type(data).__name__}")
        self.source, self.data, self.path = source, data, path
        self.used: set[str] = set()

    def where(self, key: str) -> str:
        return f"{self.path}.{key}" if self.path else key

    def error(self, key: str, message: str) -> ConfigError:
        return ConfigError(self.source, self.where(key), message)

    def get(self, key: str, default: Any = None, *, required: bool = False) -> Any:
        self.used.add(key)
        if key not in self.data or self.data[key] is None:
            if required:
                raise self.error(key, "is required")
            return default
        return self.data[key]

    def text(self, key: str, default: str | None = None, *, required: bool = False,
            choices: tuple[str, ...] | None = None, pattern: re.Pattern[str] | None = None,
            hint: str = "") -> str | None:
        value = self.get(key, default, required=required)
        if value is None:
            return None
        if not isinstance(value, str):
            raise self.error(key, f"expected a string, got {value!r}")
        if choices and value not in choices:
            raise self.error(key, f"expected one of {', '.join(choices)}; got {value!r}")
        if pattern and not pattern.match(value):
            raise self.error(key, f"{hint or 'invalid value'}; got {value!r}")
        return value

    def integer(self, key: str, default: int, *, minimum: int = 0, maximum: int | None = None) -> int:
        value = self.get(key, default)
        if isinstance(value, bool) or not isinstance(value, int):
            raise self.error(key, f"expected a whole number, got {value!r}")
        if value < minimum or (maximum is not None and value > maximum):
            upper = f" and at most {maximum}" if maximum is not None else ""
            raise self.error(key, f"expected at least {minimum}{upper}, got {value}")
        return value

    def flag(self, key: str, default: bool) -> bool:
        value = self.get(key, default)
        if not isinstance(value, bool):
            raise self.error(key, f"expected true or false, got {value!r}")
        return value

    def names(self, key: str, default: list[str] | None = None, *, required: bool = False) -> list[str]:
        value = self.get(key, default, required=required)
        return check_names(value, self.source, self.where(key), required=required)

    def sub(self, key: str) -> Reader:
        self.used.add(key)
        return Reader(self.source, self.data.get(key), self.where(key))

    def done(self) -> None:
        unknown = sorted(set(self.data) - self.used)
        if unknown:
            raise self.error(unknown[0],
                             "is not a known setting (check the spelling; see the README's config reference)")


def check_names(value: Any, source: str, field_path: str, *, required: bool = True) -> list[str]:
    """A list of PostgreSQL names: any characters (they are always quoted), 1 to 63 bytes, no NUL."""
    if value is None:
        value = []
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list):
        raise ConfigError(source, field_path, f"expected a list of names, got {value!r}")
    if required and not value:
        raise ConfigError(source, field_path, "expected at least one name")
    for item in value:
        if pg_name_problem(item):
            raise ConfigError(source, field_path, f"expected PostgreSQL names of 1 to 63 bytes, got {item!r}")
    if len(set(value)) != len(value):
        raise ConfigError(source, field_path, f"names must not repeat, got {value!r}")
    return list(value)


def parse_time(value: Any, source: str, field_path: str) -> datetime:
    if isinstance(value, datetime):
        parsed = value
    elif isinstance(value, str):
        try:
            parsed = datetime.fromisoformat(value)
        except ValueError:
            raise ConfigError(source, field_path,
                              f"expected an ISO 8601 time like 2026-12-01T02:00:00+00:00, got {value!r}") from None
    else:
        raise ConfigError(source, field_path, f"expected an ISO 8601 time, got {value!r}")
    if parsed.tzinfo is None:
        raise ConfigError(source, field_path, f"needs a UTC offset (e.g. +00:00), got {value!r}")
    return parsed
