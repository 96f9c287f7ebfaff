"""A sample workload for the demo and the end-to-end tests: schema, application role, live writer,
and the row-by-row comparison of source and target that proves nothing was lost."""

from __future__ import annotations

import random
import threading
import time
from dataclasses import dataclass, field

import psycopg
from psycopg import sql

from migration import sql as sqlfiles

SAMPLE_SCHEMA = "dms_sample"
APP_ROLE = "app_writer"


def create_sample(conn: psycopg.Connection, *, people: int = 50_000, events: int = 2_000, tickets: int = 200_000,
                  mlb: int = 20_000, seats: int = 5_000, app_role: str = APP_ROLE) -> None:
    """Create the sample schema with data, and an application role that may write to it."""
    with psycopg.ClientCursor(conn) as cur:
        cur.execute(sqlfiles.load("sample_schema"),
                    {"people": people, "events": events, "tickets": tickets, "mlb": mlb, "seats": seats})
    conn.execute(sql.SQL("CREATE ROLE {} LOGIN").format(sql.Identifier(app_role)))
    conn.execute(sql.SQL("GRANT USAGE ON SCHEMA {s} TO {r}; "
                         "GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA {s} TO {r}; "
                         "GRANT USAGE, SELECT, UPDATE ON ALL SEQUENCES IN SCHEMA {s} TO {r}")
                 .format(s=sql.Identifier(SAMPLE_SCHEMA), r=sql.Identifier(app_role)))


@dataclass
class Writer:
    """Keeps inserting, updating and deleting as the application role until stopped.

    Failures while writes are blocked are expected: they are counted, and the writer retries.
    ``committed`` counts transactions the source acknowledged.
    """

    conninfo: str
    seed: int = 7
    pause: float = 0.002
    committed: int = 0
    failures: int = 0
    last_error: str = ""
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def start(self) -> Writer:
        self._thread = threading.Thread(target=self._run, name="sample-writer", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread:
            self._thread.join(timeout=30)

    def _one_transaction(self, conn: psycopg.Connection, rng: random.Random) -> None:
        with conn.transaction():
            kind = rng.random()
            if kind < 0.5:
                conn.execute("INSERT INTO dms_sample.ticket_purchase_hist (event_id, purchased_by_id, purchase_price)"
                             " VALUES (%s, %s, %s)", (rng.randint(1, 50), rng.randint(1, 1000), rng.randint(1, 300)))
                conn.execute("INSERT INTO dms_sample.person (full_name) VALUES (%s)", (f"Writer {rng.random():.6f}",))
            elif kind < 0.7:
                conn.execute("UPDATE dms_sample.person SET last_name = %s WHERE id = %s",
                             (f"U{rng.randint(0, 9999)}", rng.randint(1, 1000)))
                conn.execute("UPDATE dms_sample.mlb_data SET mlb_pos = %s WHERE mlb_id = %s",
                             (rng.choice("CFPS"), rng.randint(1, 1000)))
            elif kind < 0.85:
                conn.execute("UPDATE dms_sample.\"Seat Map\" SET \"taken?\" = NOT \"taken?\" WHERE \"Seat Id\" = %s",
                             (rng.randint(1, 500),))
                conn.execute("INSERT INTO dms_sample.sporting_event (sport_type_name, start_date) VALUES ('baseball', "
                             "now())")
            else:
                conn.execute("DELETE FROM dms_sample.ticket_purchase_hist WHERE id = %s", (rng.randint(1, 100_000),))
                conn.execute("DELETE FROM dms_sample.mlb_data WHERE mlb_id = %s", (rng.randint(1, 20_000),))

    def _run(self) -> None:
        rng = random.Random(self.seed)
        conn: psycopg.Connection | None = None
        while not self._stop.is_set():
            try:
                if conn is None or conn.closed:
                    conn = psycopg.connect(self.conninfo, connect_timeout=3)
                self._one_transaction(conn, rng)
                self.committed += 1
            except psycopg.Error as exc:
                self.failures += 1
                self.last_error = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
                if conn is not None:
                    conn.close()
                conn = None
                time.sleep(0.05)
            time.sleep(self.pause)
        if conn is not None:
            conn.close()


@dataclass
class Comparison:
    tables: int = 0
    rows: int = 0
    lost: int = 0
    mismatched: int = 0
    extra: int = 0
    details: list[str] = field(default_factory=list)

    @property
    def clean(self) -> bool:
        return not (self.lost or self.mismatched or self.extra)


def _row_digests(conn: psycopg.Connection, schema: str, table: str, pk: list[str]) -> dict[str, list[str]]:
    if pk:
        key_expr = sql.SQL("row({})::text").format(sql.SQL(", ").join(sql.Identifier("t", c) for c in pk))
    else:
        key_expr = sql.SQL("t::text")
    query = sqlfiles.compose("compare_table_rows", schema=schema, table=table, key_expr=key_expr)
    digests: dict[str, list[str]] = {}
    for key, digest in conn.execute(query):
        digests.setdefault(key, []).append(digest)
    return digests


def compare(source: psycopg.Connection, target: psycopg.Connection, schemas: list[str]) -> Comparison:
    """Every row of every table, by primary key (or whole row), source against target."""
    result = Comparison()
    tables = source.execute(sqlfiles.load("list_tables"), {"schemas": schemas}).fetchall()
    for schema, table, pk in tables:
        result.tables += 1
        src = _row_digests(source, schema, table, list(pk))
        dst = _row_digests(target, schema, table, list(pk))
        result.rows += sum(len(v) for v in src.values())
        for key, digests in src.items():
            other = dst.get(key, [])
            if not other:
                result.lost += len(digests)
            elif sorted(other) != sorted(digests):
                # same key, different content (or a different multiplicity for tables without a key)
                missing = len(digests) - len(other)
                result.lost += max(missing, 0)
                result.mismatched += min(len(digests), len(other))
        extra = sum(len(v) for k, v in dst.items() if k not in src)
        result.extra += extra
        if src != dst:
            result.details.append(f"{schema}.{table}: differs")
    return result


def sequence_positions(conn: psycopg.Connection, schemas: list[str]) -> dict[str, int | None]:
    rows = conn.execute("SELECT schemaname || '.' || sequencename, last_value FROM pg_sequences "
                        "WHERE schemaname = ANY(%s) ORDER BY 1", (schemas,)).fetchall()
    return {name: value for name, value in rows}
