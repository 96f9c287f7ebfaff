"""Values that reach an operator from other tasks: as XComArgs (native) or rendered through Jinja (text).

Airflow-side on purpose: ``plugins/migration`` takes plain lists and dicts and never undoes a rendering.
"""

from __future__ import annotations

import ast
import json
from typing import Any


def _parsed(value: str, kinds: type | tuple[type, ...]) -> Any:
    for parse in (json.loads, ast.literal_eval):
        try:
            parsed = parse(value)
        except (ValueError, SyntaxError):
            continue
        if isinstance(parsed, kinds):
            return parsed
    return None


def as_list(value: Any, *, field: str) -> list[Any]:
    """A list from an XComArg, a rendered template (JSON or a Python literal) or a tuple."""
    if value in (None, "", "None"):
        return []
    if isinstance(value, list | tuple):
        return list(value)
    parsed = _parsed(value, (list, tuple)) if isinstance(value, str) else None
    if parsed is None:
        raise ValueError(f"{field}: expected a list, got {value!r}")
    return list(parsed)


def results_list(results: Any) -> list[dict[str, Any]]:
    """Mapped task results as a list: a run of one database resolves to the single result itself."""
    if results is None:
        return []
    if isinstance(results, dict):
        return [results]
    return [dict(r) for r in results if r]
