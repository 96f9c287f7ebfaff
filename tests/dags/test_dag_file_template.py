"""The DAG file a user writes from the README loads as written, with Airflow's safe mode on.

Safe mode (the default) skips any file that does not contain both "airflow" and "dag"; a file that
is skipped gives no DAG and no import error. Nothing is stood in: Airflow's own DagBag parses the file.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def readme_template() -> str:
    text = (ROOT / "README.md").read_text()
    match = re.search(r"<!-- dag-file-template -->\n```python\n(.*?)```", text, re.S)
    assert match, "README.md lost its marked DAG file template"
    return match.group(1)


@pytest.fixture(autouse=True)
def shipped_migrations(monkeypatch):
    # A whole-DAG test of the session may point MIGRATIONS_DIR elsewhere; these files name shipped YAMLs.
    monkeypatch.setenv("MIGRATIONS_DIR", str(ROOT / "include" / "migrations"))


def bag_of(folder: Path):
    from airflow.dag_processing.dagbag import DagBag

    return DagBag(dag_folder=str(folder), safe_mode=True)


def test_the_readme_template_loads_under_safe_mode(tmp_path):
    template = readme_template()
    assert len(template.strip().splitlines()) == 3, template
    (tmp_path / "migrate__local_demo.py").write_text(template)
    bag = bag_of(tmp_path)
    assert bag.import_errors == {}
    assert list(bag.dags) == ["migrate__local_demo"]


def test_the_shipped_dag_files_load_without_their_docstrings(tmp_path):
    for shipped in sorted((ROOT / "dags").glob("migrate__*.py")):
        code = re.sub(r'^""".*?"""\n', "", shipped.read_text(), flags=re.S)
        assert "airflow" not in code.replace("airflow_dag_for_file", ""), "only the function name may carry it"
        (tmp_path / shipped.name).write_text(code)
    bag = bag_of(tmp_path)
    assert bag.import_errors == {}
    assert sorted(bag.dags) == sorted(p.stem for p in (ROOT / "dags").glob("migrate__*.py"))


def test_a_file_without_the_word_gives_no_dag_and_no_error(tmp_path):
    # What the name prevents: the same DAG built by a file that never spells the word is skipped silently.
    (tmp_path / "migrate__local_demo.py").write_text(
        'import dag_factory\n\ndag = getattr(dag_factory, "air" + "flow_dag_for_file")(__file__)\n')
    bag = bag_of(tmp_path)
    assert bag.import_errors == {}
    assert list(bag.dags) == []
