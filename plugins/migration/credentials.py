"""Passwords kept off command lines, out of logged statements and out of the catalog where possible.

libpq reads a password from a password file (``passfile=`` in the connection string) as well as from
the string itself. The local platform uses that twice:

- ``pg_basebackup`` gets ``passfile=<temporary file>`` instead of ``password=``, so ``ps`` shows a path;
  the file is removed when the copy ends.
- The subscription's connection string names a password file in the clone's data directory
  (readable by that server only), so ``pg_subscription`` holds a path, not the password. The file is
  removed when the subscription is dropped (``native_cdc.drop_subscription``).

Both files are 0600 and owned by the server's OS user (libpq ignores a password file that others can
read). The password travels to them through a pipe, never through a process argument.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import psycopg

from migration.localpg import _as_server_user, _give_to_server_user

# Password files this package writes into a data directory; drop_subscription removes only these.
SUBSCRIPTION_PASSFILE_RE = re.compile(r"^migration_subscription_[A-Za-z0-9_]+\.pgpass$")


class CredentialError(RuntimeError):
    """A password file cannot be written or the connection string is not usable; the message says why."""


def split_password(conninfo: str) -> tuple[dict[str, str], str | None]:
    """The connection string's parameters without ``password``, and the password (None when absent)."""
    try:
        params = psycopg.conninfo.conninfo_to_dict(conninfo)
    except psycopg.ProgrammingError as exc:
        raise CredentialError(f"source_conninfo: not a valid libpq connection string ({exc})") from None
    password = params.pop("password", None)
    return {k: str(v) for k, v in params.items() if v is not None}, (str(password) if password else None)


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace(":", "\\:")


def passfile_line(user: str, password: str) -> str:
    """One password-file line for ``user`` on any host, port and database (the file serves one connection)."""
    if "\n" in password or "\r" in password:
        raise CredentialError("password: a password with a line break cannot go into a password file")
    return f"*:*:*:{_escape(user)}:{_escape(password)}\n"


def write_server_passfile(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` as the PostgreSQL server's OS user, mode 0600, through stdin."""
    cmd = _as_server_user(["sh", "-c", 'umask 077 && cat > "$1" && chmod 600 "$1"', "sh", str(path)])
    proc = subprocess.run(cmd, input=text, capture_output=True, text=True)
    if proc.returncode != 0:
        raise CredentialError(f"writing the password file {path} failed: {proc.stderr.strip()}")


def remove_server_file(path: Path) -> bool:
    """Remove a file owned by the server's OS user; returns whether it existed."""
    existed = path.exists()
    if existed:
        proc = subprocess.run(_as_server_user(["rm", "-f", str(path)]), capture_output=True, text=True)
        if proc.returncode != 0:
            raise CredentialError(f"removing the password file {path} failed: {proc.stderr.strip()}")
    return existed


@contextmanager
def temporary_passfile(conninfo: str) -> Iterator[str]:
    """The connection string with its password moved into a temporary 0600 password file.

    Yields the new string (``passfile=...``, no ``password=``); the file and its folder are removed on
    exit, however the block ends. A string without a password is yielded unchanged.
    """
    params, password = split_password(conninfo)
    if password is None:
        yield conninfo
        return
    folder = Path(tempfile.mkdtemp(prefix="pgmig-pass-"))
    try:
        _give_to_server_user(folder)
        path = folder / "pgpass"
        write_server_passfile(path, passfile_line(params.get("user") or _default_user(), password))
        yield psycopg.conninfo.make_conninfo(**params, passfile=str(path))
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def _default_user() -> str:
    # libpq's default user name is the OS user running the client: the server user under runuser.
    return "postgres" if os.geteuid() == 0 else (os.environ.get("USER") or "postgres")


def subscription_passfile_path(directory: str | Path, subscription: str) -> Path:
    """Where the password file of ``subscription`` goes in ``directory`` (the target server's data directory)."""
    safe = re.sub(r"[^A-Za-z0-9_]", "_", subscription)
    # The digest keeps two names that sanitize alike apart.
    digest = hashlib.sha256(subscription.encode()).hexdigest()[:12]
    return Path(directory) / f"migration_subscription_{safe}_{digest}.pgpass"


def subscription_conninfo(conninfo: str, subscription: str, passfile_directory: str | Path | None) -> str:
    """The connection string the subscription stores.

    With ``passfile_directory`` (a folder the target server reads, the local platform's data
    directory) the password goes into a password file there and the string names that file; without
    it the string is returned as it is (the password is then stored in pg_subscription; see the
    README's "Credentials").
    """
    params, password = split_password(conninfo)
    if password is None or passfile_directory is None:
        return conninfo
    directory = Path(passfile_directory)
    if not directory.is_dir():
        raise CredentialError(f"passfile_directory: {directory} is not a directory the target server can read")
    path = subscription_passfile_path(directory, subscription)
    write_server_passfile(path, passfile_line(params.get("user") or _default_user(), password))
    return psycopg.conninfo.make_conninfo(**params, passfile=str(path))


def remove_subscription_passfile(stored_conninfo: str | None) -> str | None:
    """Remove the password file a dropped subscription's connection string named, if this package made it."""
    if not stored_conninfo:
        return None
    try:
        passfile = psycopg.conninfo.conninfo_to_dict(stored_conninfo).get("passfile")
    except psycopg.ProgrammingError:
        return None
    if not passfile or not SUBSCRIPTION_PASSFILE_RE.match(Path(str(passfile)).name):
        return None
    return str(passfile) if remove_server_file(Path(str(passfile))) else None
