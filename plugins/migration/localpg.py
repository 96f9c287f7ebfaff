"""Local PostgreSQL servers: find the binaries, init, start, stop and clone with pg_basebackup.

Used by the `local` platform (the clone in the "target account" is a physical copy started on
its own port), by the demo and by the tests. PostgreSQL refuses to run as root, so when the
effective uid is 0 every server command runs as the `postgres` user through `runuser`.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

SERVER_BINARIES = ("initdb", "pg_ctl", "postgres", "pg_basebackup")
INSTALL_HINT = (
    "PostgreSQL server binaries (initdb, pg_ctl, postgres, pg_basebackup) were not found on PATH, "
    "through `pg_config --bindir`, or in /usr/lib/postgresql/*/bin. Install them, e.g. "
    "`apt-get install postgresql-15` on Debian/Ubuntu or `brew install postgresql@15` on macOS, "
    "or set PG_BINDIR to the folder that holds them."
)


class LocalPgError(RuntimeError):
    """A local server command failed; the message carries its output."""


def _has_server_binaries(folder: str | Path) -> bool:
    return all(os.access(Path(folder, name), os.X_OK) for name in SERVER_BINARIES)


def find_bindir() -> Path:
    """Folder with the PostgreSQL server binaries: $PG_BINDIR, PATH, pg_config, /usr/lib/postgresql."""
    candidates: list[str] = []
    if os.environ.get("PG_BINDIR"):
        candidates.append(os.environ["PG_BINDIR"])
    on_path = shutil.which("initdb")
    if on_path:
        candidates.append(str(Path(on_path).parent))
    pg_config = shutil.which("pg_config")
    if pg_config:
        try:
            out = subprocess.run([pg_config, "--bindir"], capture_output=True, text=True, check=True)
            candidates.append(out.stdout.strip())
        except (OSError, subprocess.CalledProcessError):
            pass
    versions = glob.glob("/usr/lib/postgresql/*/bin")
    candidates.extend(sorted(versions, key=lambda p: int(Path(p).parent.name) if Path(p).parent.name.isdigit() else 0, reverse=True))
    for folder in candidates:
        if _has_server_binaries(folder):
            return Path(folder)
    raise LocalPgError(INSTALL_HINT)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _as_server_user(cmd: list[str]) -> list[str]:
    if os.geteuid() == 0:
        return ["runuser", "-u", "postgres", "--", *cmd]
    return cmd


def _give_to_server_user(path: Path) -> None:
    if os.geteuid() == 0:
        entry = pwd.getpwnam("postgres")
        os.chown(path, entry.pw_uid, entry.pw_gid)


def make_workdir(prefix: str = "pgmig-") -> Path:
    """A fresh folder the server user can write to (pytest's tmp dirs are private to root)."""
    path = Path(tempfile.mkdtemp(prefix=prefix))
    path.chmod(0o755)
    _give_to_server_user(path)
    return path


def _run(cmd: list[str], *, what: str, timeout: float = 300) -> str:
    proc = subprocess.run(_as_server_user(cmd), capture_output=True, text=True, timeout=timeout)
    if proc.returncode != 0:
        raise LocalPgError(f"{what} failed (exit {proc.returncode}): {proc.stderr.strip() or proc.stdout.strip()}")
    return proc.stdout


def _write_as_server_user(path: Path, text: str, *, append: bool) -> None:
    # The server user owns the data directory; write through it so ownership stays right.
    cmd = ["tee", "-a", str(path)] if append else ["tee", str(path)]
    proc = subprocess.run(_as_server_user(cmd), input=text, capture_output=True, text=True)
    if proc.returncode != 0:
        raise LocalPgError(f"writing {path} failed: {proc.stderr.strip()}")


BASE_SETTINGS = {
    "listen_addresses": "'127.0.0.1'",
    "unix_socket_directories": "''",
    "wal_level": "logical",
    "max_replication_slots": "20",
    "max_wal_senders": "20",
    "max_logical_replication_workers": "8",
    "max_worker_processes": "16",
    "max_prepared_transactions": "10",
    "fsync": "off",
    "synchronous_commit": "off",
    "full_page_writes": "off",
    "shared_buffers": "64MB",
    "wal_sender_timeout": "10s",
    "wal_receiver_status_interval": "1s",
    "logging_collector": "off",
    "log_min_messages": "log",
}


@dataclass
class LocalServer:
    """One PostgreSQL server on 127.0.0.1 with its data directory and log file."""

    datadir: Path
    port: int
    bindir: Path
    user: str = "postgres"

    @property
    def logfile(self) -> Path:
        return self.datadir.parent / f"{self.datadir.name}.log"

    def conninfo(self, dbname: str = "postgres", user: str | None = None) -> str:
        return f"host=127.0.0.1 port={self.port} dbname={dbname} user={user or self.user} connect_timeout=10"

    def _bin(self, name: str) -> str:
        return str(self.bindir / name)

    def _write_settings(self, settings: dict[str, str]) -> None:
        lines = "".join(f"{key} = {value}\n" for key, value in settings.items())
        _write_as_server_user(self.datadir / "postgresql.auto.conf", lines, append=True)

    def init(self, extra_settings: dict[str, str] | None = None) -> LocalServer:
        _run([self._bin("initdb"), "-D", str(self.datadir), "-U", self.user, "--auth=trust", "-E", "UTF8", "--locale=C"],
             what="initdb")
        hba = "local all all trust\nhost all all 127.0.0.1/32 trust\nhost replication all 127.0.0.1/32 trust\n"
        _write_as_server_user(self.datadir / "pg_hba.conf", hba, append=False)
        self._write_settings({**BASE_SETTINGS, "port": str(self.port), **(extra_settings or {})})
        return self

    def start(self, timeout: int = 60) -> LocalServer:
        _run([self._bin("pg_ctl"), "-D", str(self.datadir), "-l", str(self.logfile), "-w", "-t", str(timeout), "start"],
             what=f"starting the server in {self.datadir} (log: {self.logfile})", timeout=timeout + 30)
        return self

    def stop(self, mode: str = "fast") -> None:
        if (self.datadir / "postmaster.pid").exists():
            _run([self._bin("pg_ctl"), "-D", str(self.datadir), "-m", mode, "-w", "stop"], what="stopping the server")

    def is_running(self) -> bool:
        proc = subprocess.run(_as_server_user([self._bin("pg_ctl"), "-D", str(self.datadir), "status"]),
                              capture_output=True, text=True)
        return proc.returncode == 0

    def log_text(self) -> str:
        return self.logfile.read_text(errors="replace") if self.logfile.exists() else ""

    @classmethod
    def basebackup(cls, source_conninfo: str, datadir: Path, port: int, bindir: Path, *,
                   user: str = "postgres", timeout: int = 1800) -> LocalServer:
        """Physical copy of a running server into ``datadir`` (WAL streamed along), set to ``port``."""
        server = cls(datadir=datadir, port=port, bindir=bindir, user=user)
        _run([str(bindir / "pg_basebackup"), "-d", source_conninfo, "-D", str(datadir), "-X", "stream",
              "-c", "fast", "--no-sync"], what="pg_basebackup", timeout=timeout)
        server._write_settings({"port": str(port)})
        return server


def wait_until_accepting(conninfo: str, timeout: float = 60) -> None:
    """Block until a server accepts connections (used by the demo and tests, not by tasks)."""
    import psycopg

    deadline = time.monotonic() + timeout
    while True:
        try:
            with psycopg.connect(conninfo, connect_timeout=2):
                return
        except psycopg.OperationalError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)
