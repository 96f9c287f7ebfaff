"""Scenario 13 (credentials) on real servers: the replication role's password reaches pg_basebackup and
the subscription through password files, never a command line, a logged statement or pg_subscription.

Nothing is stood in. The source's pg_hba.conf requires scram-sha-256 for the replication role, so each
test also proves the password file is what authenticated. Process command lines are read from
/proc/<pid>/cmdline, the text `ps -eo args` prints, sampled in a thread while the work runs.
"""

from __future__ import annotations

import tempfile
import threading
import time
from pathlib import Path

import psycopg
import pytest

from migration.local_clone import clone_local
from migration.localpg import LocalServer, _write_as_server_user, free_port
from migration.native_cdc import advance_origin, create_subscription, drop_subscription

pytestmark = [pytest.mark.integration, pytest.mark.safety]

# ':' and '\' need escaping in a password file; searches look for NEEDLE, which no escaping changes.
NEEDLE = "Zq7-repl-Sekret-4c1d"
PASSWORD = NEEDLE + ":x\\y"
ROLE = "mig_repl"


class CommandLines:
    """Samples every process's command line (what `ps -eo args` shows) until stopped."""

    def __init__(self):
        self.lines: set[str] = set()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> CommandLines:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join(10)

    def _run(self) -> None:
        while not self._stop.is_set():
            for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
                try:
                    text = cmdline.read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()
                except OSError:
                    continue
                if text:
                    self.lines.add(text)
            time.sleep(0.005)

    def showing(self, secret: str) -> list[str]:
        return sorted(line for line in self.lines if secret in line)


def require_password(server: LocalServer, role: str) -> None:
    """pg_hba.conf: ``role`` must authenticate with scram-sha-256 (everyone else stays trusted)."""
    hba = server.datadir / "pg_hba.conf"
    rules = (f"host all {role} 127.0.0.1/32 scram-sha-256\n"
             f"host replication {role} 127.0.0.1/32 scram-sha-256\n")
    _write_as_server_user(hba, rules + hba.read_text(), append=False)
    with psycopg.connect(server.conninfo(), autocommit=True) as conn:
        conn.execute("SELECT pg_reload_conf()")
    time.sleep(0.3)
    with pytest.raises(psycopg.OperationalError):
        psycopg.connect(server.conninfo(user=role), connect_timeout=5).close()


@pytest.fixture(scope="module")
def source(pg_servers):
    server = pg_servers.new("credsrc")
    with psycopg.connect(server.conninfo(), autocommit=True) as conn:
        conn.execute("CREATE TABLE t (id int PRIMARY KEY, pad text)")
        # Enough data that pg_basebackup runs long enough to be seen by the sampler.
        conn.execute("INSERT INTO t SELECT g, repeat('x', 200) FROM generate_series(1, 100000) g")
        conn.execute(f"CREATE ROLE {ROLE} LOGIN REPLICATION PASSWORD {_literal(conn, PASSWORD)}")
        conn.execute(f"GRANT SELECT ON t TO {ROLE}")
        conn.execute("CREATE PUBLICATION pub FOR TABLE t")
    require_password(server, ROLE)
    return server


def _literal(conn: psycopg.Connection, value: str) -> str:
    return psycopg.sql.Literal(value).as_string(conn)


def repl_conninfo(server: LocalServer, dbname: str = "postgres") -> str:
    return psycopg.conninfo.make_conninfo(server.conninfo(dbname, user=ROLE), password=PASSWORD)


def test_pg_basebackup_gets_the_password_from_a_removed_passfile(pg_servers, source):
    datadir = pg_servers.workdir / "clone_creds"
    leftovers_before = set(Path(tempfile.gettempdir()).glob("pgmig-pass-*"))
    with CommandLines() as seen:
        result = clone_local(repl_conninfo(source), datadir, free_port(), pg_servers.bindir)
    clone = LocalServer(datadir=Path(result["datadir"]), port=result["port"], bindir=pg_servers.bindir)
    pg_servers.servers.append(clone)
    assert result["copied"], "the copy authenticated as the replication role"
    assert any("pg_basebackup" in line for line in seen.lines), "the sampler must have seen pg_basebackup run"
    assert seen.showing(NEEDLE) == []
    assert set(Path(tempfile.gettempdir()).glob("pgmig-pass-*")) == leftovers_before, \
        "the temporary password file is removed"
    assert NEEDLE not in clone.log_text()
    with psycopg.connect(clone.conninfo(), autocommit=True) as conn:
        assert conn.execute("SELECT count(*) FROM t").fetchone()[0] == 100000


def _subscribe_setup(pg_servers, source, slot: str, **target_settings: str) -> LocalServer:
    target = pg_servers.new("credtgt", **target_settings)
    with psycopg.connect(target.conninfo(), autocommit=True) as conn:
        conn.execute("CREATE TABLE t (id int PRIMARY KEY, pad text)")
    with psycopg.connect(source.conninfo(), autocommit=True) as conn:
        conn.execute("SELECT pg_create_logical_replication_slot(%s, 'pgoutput')", (slot,))
    return target


def _slot_lsn(source: LocalServer, slot: str) -> str:
    with psycopg.connect(source.conninfo(), autocommit=True) as conn:
        return conn.execute("SELECT confirmed_flush_lsn::text FROM pg_replication_slots WHERE slot_name = %s",
                            (slot,)).fetchone()[0]


def _stored_conninfo(target: LocalServer, name: str) -> str:
    with psycopg.connect(target.conninfo(), autocommit=True) as conn:
        return conn.execute("SELECT subconninfo FROM pg_subscription WHERE subname = %s", (name,)).fetchone()[0]


def test_local_subscription_keeps_its_password_in_a_passfile_and_drop_removes_it(pg_servers, source):
    target = _subscribe_setup(pg_servers, source, "slot_pf", log_statement="all")
    with CommandLines() as seen, psycopg.connect(target.conninfo(), autocommit=True) as tgt:
        created = create_subscription(tgt, "sub_pf", repl_conninfo(source), "pub", "slot_pf",
                                      passfile_directory=str(target.datadir))
        advance_origin(tgt, "sub_pf", origin_lsn=_slot_lsn(source, "slot_pf"))
        with psycopg.connect(source.conninfo(), autocommit=True) as src:
            src.execute("INSERT INTO t VALUES (-1, 'through the passfile')")
        deadline = time.monotonic() + 60
        while not tgt.execute("SELECT count(*) FROM t WHERE id = -1").fetchone()[0]:
            assert time.monotonic() < deadline, "the subscription did not authenticate with the password file"
            time.sleep(0.2)
    assert created["created"]
    stored = _stored_conninfo(target, "sub_pf")
    assert NEEDLE not in stored and "password" not in stored
    passfile = Path(psycopg.conninfo.conninfo_to_dict(stored)["passfile"])
    assert passfile.parent == target.datadir and passfile.name.endswith(".pgpass")
    assert passfile.stat().st_mode & 0o777 == 0o600
    assert NEEDLE not in target.log_text()
    assert seen.showing(NEEDLE) == []

    with psycopg.connect(target.conninfo(), autocommit=True) as tgt:
        assert drop_subscription(tgt, "sub_pf")
    assert not passfile.exists(), "dropping the subscription removes its stored credential"


def test_subscription_statement_is_never_logged_with_the_password(pg_servers, source):
    """Where the server has no file system for a password file (RDS, Aurora) the password stays in the
    connection string: the server log, with every statement logged, still never shows it, on success
    and on error."""
    target = _subscribe_setup(pg_servers, source, "slot_cs", log_statement="all",
                              log_min_messages="error", log_min_error_statement="error",
                              log_min_duration_statement="0")
    with psycopg.connect(target.conninfo(), autocommit=True) as tgt:
        create_subscription(tgt, "sub_cs", repl_conninfo(source), "pub", "slot_cs")
        wrong = psycopg.conninfo.make_conninfo(repl_conninfo(source), password=PASSWORD + "-wrong")
        with pytest.raises(psycopg.Error, match="password authentication failed"):
            create_subscription(tgt, "sub_cs_wrong", wrong, "pub", "slot_cs")
    log_text = target.log_text()
    assert "password authentication failed" in log_text and "statement: " in log_text, "statements are logged"
    assert NEEDLE not in log_text
    # What the README states: without a password file, pg_subscription holds the password until the drop.
    assert NEEDLE in _stored_conninfo(target, "sub_cs")
    with psycopg.connect(target.conninfo(), autocommit=True) as tgt:
        assert drop_subscription(tgt, "sub_cs")
        assert tgt.execute("SELECT count(*) FROM pg_subscription").fetchone()[0] == 0
