"""Shared pieces of the benchmarks: the size switch, throwaway servers, timing and the result line.

Every comparison prints one line: ``bench: <name>: ours <v> <unit>; <baseline> <v> <unit>; ratio <r>x``.
``BENCH_SIZE=full`` selects the sizes of issue 10; anything else (the default) the quick sizes.
"""

from __future__ import annotations

import os
import shutil
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
for folder in (ROOT / "plugins", ROOT / "dags"):
    if str(folder) not in sys.path:
        sys.path.insert(0, str(folder))

from migration.localpg import LocalServer, find_bindir, free_port, make_workdir  # noqa: E402

FULL = os.environ.get("BENCH_SIZE", "quick").strip().lower() == "full"


def size(quick: int, full: int) -> int:
    return full if FULL else quick


def line(name: str, ours: float, unit: str, baseline_name: str, baseline: float, baseline_unit: str | None = None,
         *, ratio: float | None = None) -> str:
    """The one result line of a comparison; ``ratio`` defaults to ours / baseline."""
    if ratio is None:
        ratio = ours / baseline if baseline else float("inf")
    text = (f"bench: {name}: ours {ours:.4g} {unit}; {baseline_name} {baseline:.4g} {baseline_unit or unit}; "
            f"ratio {ratio:.3g}x")
    print(text, flush=True)
    return text


def best_of(repeats: int, call: Callable[[], object]) -> tuple[float, object]:
    best, result = float("inf"), None
    for _ in range(repeats):
        started = time.perf_counter()
        result = call()
        best = min(best, time.perf_counter() - started)
    return best, result


@contextmanager
def servers(count: int, settings: dict[str, str] | None = None, prefix: str = "pgmig-bench-") -> Iterator[list]:
    """``count`` new PostgreSQL servers, stopped and removed afterwards."""
    workdir = make_workdir(prefix)
    made: list[LocalServer] = []
    try:
        for i in range(count):
            server = LocalServer(datadir=workdir / f"s{i}", port=free_port(), bindir=find_bindir())
            made.append(server)
            server.init(settings or {}).start()
        yield made
    finally:
        for server in reversed(made):
            try:
                server.stop(mode="immediate")
            except Exception:  # noqa: BLE001 - teardown goes on
                pass
        shutil.rmtree(workdir, ignore_errors=True)


def clone(made: list, source: LocalServer, name: str = "clone") -> LocalServer:
    """A pg_basebackup copy of ``source``, started, and stopped with the servers of ``made``."""
    server = LocalServer.basebackup(source.conninfo(), source.datadir.parent / name, free_port(), find_bindir())
    made.append(server)
    return server.start()


def pgcopydb() -> str | None:
    """The pgcopydb binary, when installed."""
    found = shutil.which("pgcopydb")
    if found:
        return found
    for candidate in sorted(Path("/usr/lib/postgresql").glob("*/bin/pgcopydb")):
        return str(candidate)
    return None
