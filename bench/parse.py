"""DAG parsing: marginal milliseconds per migration, and no I/O at import.

Writes N copies of the demo migration (``include/migrations/local_demo.yaml`` under new ids) with their
thin DAG files, and parses the folder with Airflow's DagBag in a fresh process, once with 1 migration and
once with N. The marginal cost is (time(N) - time(1)) / (N - 1), the median of a few runs, in CPU time of
the parsing process (parsing is CPU-bound; CPU time does not count what other processes on a shared machine
take from it). In the parsing
process every network connect (socket, psycopg, boto3 clients) raises, so any I/O at import fails the run.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from common import ROOT, line, size

MIGRATIONS = size(200, 200)
RUNS = size(2, 5)
GOAL_MS = 10.0

PARSER = r'''
import json, socket, sys, time
def refuse(*args, **kwargs):
    raise RuntimeError("I/O at DAG parse time: a connect was attempted")
socket.socket.connect = refuse
socket.socket.connect_ex = refuse
socket.create_connection = refuse
import psycopg
psycopg.Connection.connect = classmethod(refuse)
psycopg.AsyncConnection.connect = classmethod(refuse)
import boto3, botocore.session
boto3.client = refuse
botocore.session.Session.create_client = refuse
from airflow.dag_processing.dagbag import DagBag
started = time.process_time()
bag = DagBag(dag_folder=sys.argv[1], safe_mode=False)
seconds = time.process_time() - started
tasks = sum(len(d.tasks) for d in bag.dags.values())
errors = {k: v[:300] for k, v in bag.import_errors.items()}
print(json.dumps({"seconds": seconds, "dags": len(bag.dags), "tasks": tasks, "errors": errors}))
'''


def make_folder(root: Path, count: int) -> tuple[Path, Path]:
    dags, migrations = root / f"dags{count}", root / f"migrations{count}"
    dags.mkdir()
    migrations.mkdir()
    demo = (ROOT / "include" / "migrations" / "local_demo.yaml").read_text()
    thin = (ROOT / "dags" / "migrate__local_demo.py").read_text()
    for i in range(count):
        mid = f"bench_{i:04d}"
        (migrations / f"{mid}.yaml").write_text(demo.replace("migration_id: local_demo", f"migration_id: {mid}")
                                                 .replace("/tmp/pg-account-migration-demo/clone",
                                                          f"/tmp/pg-account-migration-bench/{mid}"))
        (dags / f"migrate__{mid}.py").write_text(thin)
    return dags, migrations


def parse(dags: Path, migrations: Path, home: Path) -> dict:
    env = {**os.environ, "MIGRATIONS_DIR": str(migrations), "AIRFLOW_HOME": str(home),
           "AIRFLOW__CORE__LOAD_EXAMPLES": "False", "AIRFLOW__CORE__DAGS_FOLDER": str(dags),
           "AIRFLOW__CORE__PLUGINS_FOLDER": str(ROOT / "plugins"),
           "PYTHONPATH": os.pathsep.join([str(ROOT / "plugins"), str(ROOT / "dags")])}
    out = subprocess.run([sys.executable, "-c", PARSER, str(dags)], env=env, capture_output=True, text=True)
    if out.returncode:
        raise SystemExit(f"parsing failed:\n{out.stderr[-3000:]}")
    result = json.loads(out.stdout.strip().splitlines()[-1])
    if result["errors"]:
        raise SystemExit(f"parsing failed: {result['errors']}")
    return result


def main() -> None:
    with tempfile.TemporaryDirectory(prefix="pgmig-parse-") as tmp:
        root = Path(tmp)
        one, many = make_folder(root, 1), make_folder(root, MIGRATIONS)
        home = root / "home"
        home.mkdir()
        parse(*one, home)  # Airflow's first start in a new home writes its config
        marginals, tasks = [], 0
        for _ in range(RUNS):
            first, last = parse(*one, home), parse(*many, home)
            assert first["dags"] == 1 and last["dags"] == MIGRATIONS, (first, last)
            tasks = last["tasks"] // MIGRATIONS
            marginals.append((last["seconds"] - first["seconds"]) / (MIGRATIONS - 1) * 1000)
    marginal = statistics.median(marginals)
    print(f"parsing: {MIGRATIONS} migrations of {tasks} tasks each, no connect attempted; "
          f"marginal ms per run: {', '.join(f'{m:.1f}' for m in marginals)}")
    line(f"parsing marginal per migration at {MIGRATIONS}", marginal, "ms", "goal", GOAL_MS)


if __name__ == "__main__":
    main()
