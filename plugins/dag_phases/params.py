"""Trigger-form Params that are cheap to deep-copy.

Airflow deep-copies the DAG's Params for every operator it builds (``get_merged_defaults``), which was
about a third of parsing a migration DAG. A Param made here copies its value but shares its schema, as
``Param.__copy__`` does: Airflow never changes a Param's schema in place. It stays an
``airflow.sdk.Param`` (so it serializes like any other); only its instance carries the copier.
"""

from __future__ import annotations

from typing import Any

from airflow.sdk import Param


def _copied(value: Any) -> Any:
    # A Param's value is JSON (Param checks it): only its lists and dicts need copying.
    if isinstance(value, list):
        return [_copied(item) for item in value]
    if isinstance(value, dict):
        return {key: _copied(item) for key, item in value.items()}
    return value


class _SharedSchemaCopy:
    """The ``__deepcopy__`` of one Param: a new Param with the value deep-copied and the schema shared."""

    __slots__ = ("param",)

    def __init__(self, param: Param):
        self.param = param

    def __call__(self, memo: dict[int, Any] | None = None) -> Param:
        new = Param.__new__(Param)
        new.__dict__.update(self.param.__dict__)
        new.value = _copied(self.param.value)
        new.__deepcopy__ = _SharedSchemaCopy(new)
        return new


def cheap_param(**field: Any) -> Param:
    """``Param(**field)`` whose deep copies share its schema."""
    param = Param(**field)
    param.__deepcopy__ = _SharedSchemaCopy(param)
    return param
