"""Endpoint overrides: a host and port given to a task instead of its connection's own.

Operators receive them as (possibly templated) arguments, so an unset value can arrive as ``None``,
``""`` or the rendered string ``"None"``; each of those means "use the connection's own".
"""

from __future__ import annotations


def endpoint_override(host: str | None, port: int | str | None, *,
                      port_field: str = "target_port") -> tuple[str | None, int | None]:
    """Host and port from (possibly templated) operator arguments; empty or "None" means the connection's own."""
    host = None if host in (None, "", "None") else str(host)
    if port in (None, "", "None"):
        return host, None
    try:
        number = int(port)
    except (TypeError, ValueError):
        raise ValueError(f"{port_field}: expected a port number, got {port!r}") from None
    if not 0 < number < 65536:
        raise ValueError(f"{port_field}: {number} is not a TCP port")
    return host, number
