"""Every operator and sensor class in plugins/ is run by a DAG built from the shipped YAMLs, or is a base
class of one that is: an operator no DAG runs is dead code.

Nothing is stood in: the DAGs are built from include/migrations by the project's own DAG files.
"""

from __future__ import annotations

import importlib
import inspect
import pkgutil
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def shipped_dags():
    from airflow.dag_processing.dagbag import DagBag

    mp = pytest.MonkeyPatch()
    mp.setenv("MIGRATIONS_DIR", str(ROOT / "include" / "migrations"))
    try:
        bag = DagBag(dag_folder=str(ROOT / "dags"))
    finally:
        mp.undo()
    assert bag.import_errors == {}
    return bag.dags


def _task_classes(dags) -> set[type]:
    classes = set()
    for dag in dags.values():
        for task in dag.tasks:
            cls = getattr(task, "operator_class", None) if getattr(task, "is_mapped", False) else type(task)
            assert isinstance(cls, type), task.task_id
            classes.update(inspect.getmro(cls))
    return classes


def _plugin_operator_classes() -> dict[str, type]:
    from airflow.sdk import BaseOperator

    found = {}
    for package in ("operators", "sensors"):
        for module_info in pkgutil.iter_modules([str(ROOT / "plugins" / package)]):
            module = importlib.import_module(f"{package}.{module_info.name}")
            for name, cls in vars(module).items():
                if inspect.isclass(cls) and issubclass(cls, BaseOperator) and cls.__module__ == module.__name__:
                    found[f"{module.__name__}.{name}"] = cls
    return found


def test_every_operator_and_sensor_class_runs_in_a_shipped_dag(shipped_dags):
    classes = _plugin_operator_classes()
    used = _task_classes(shipped_dags)
    unused = sorted(name for name, cls in classes.items() if cls not in used)
    assert unused == [], f"operator/sensor classes no shipped DAG runs (wire them or delete them): {unused}"


def test_the_check_sees_a_class_no_dag_runs(shipped_dags):
    """The check itself can fail: a class defined here, outside every DAG, is not among the used ones."""
    from airflow.sdk import BaseOperator

    class NeverScheduledOperator(BaseOperator):
        pass

    assert NeverScheduledOperator not in _task_classes(shipped_dags)
    assert len(_plugin_operator_classes()) >= 20
