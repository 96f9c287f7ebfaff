"""The core layer stays free of Airflow: ``plugins/migration`` imports nothing Airflow-side.

Every module's syntax tree is read, so imports inside function bodies count as much as those at the
top, and so does ``importlib.import_module("...")`` with a literal name. Nothing is stood in: the test
reads the source files only.
"""

from __future__ import annotations

import ast
from pathlib import Path

MIGRATION = Path(__file__).resolve().parents[2] / "plugins" / "migration"

# Top-level packages that belong to the Airflow side (``plugins/`` is on sys.path, so ``connections``
# is ours; ``hooks`` is kept in the list so that no module of that name can come back as a side door).
AIRFLOW_SIDE = ("airflow", "connections", "hooks", "operators", "sensors", "triggers")


def _imported_names(tree: ast.AST) -> list[tuple[int, str]]:
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.append((node.lineno, node.module))
        elif (isinstance(node, ast.Call) and node.args and isinstance(node.args[0], ast.Constant)
              and isinstance(node.args[0].value, str)
              and (isinstance(node.func, ast.Attribute) and node.func.attr == "import_module"
                   or isinstance(node.func, ast.Name) and node.func.id in ("import_module", "__import__"))):
            found.append((node.lineno, node.args[0].value))
    return found


def airflow_side_imports(path: Path) -> list[str]:
    """``"<line>: <module>"`` for every Airflow-side import in one file, wherever it sits."""
    tree = ast.parse(path.read_text(), filename=str(path))
    return [f"{line}: {name}" for line, name in _imported_names(tree)
            if name.split(".")[0] in AIRFLOW_SIDE]


def violations() -> dict[str, list[str]]:
    """``{module path: ["<line>: <module>", ...]}`` for every module of plugins/migration that imports Airflow-side."""
    found = {str(path.relative_to(MIGRATION)): airflow_side_imports(path) for path in sorted(MIGRATION.rglob("*.py"))}
    return {module: hits for module, hits in found.items() if hits}


def test_the_scan_sees_imports_inside_function_bodies(tmp_path):
    module = tmp_path / "sample.py"
    module.write_text("import json\n\n\ndef check():\n    from connections.postgres import connect\n"
                      "    import airflow.sdk\n    return importlib.import_module('triggers.poll')\n")
    assert airflow_side_imports(module) == ["5: connections.postgres", "6: airflow.sdk", "7: triggers.poll"]


def test_migration_imports_nothing_from_airflow_connections_operators_sensors_or_triggers():
    assert violations() == {}, (
        "plugins/migration must stay Airflow-free; move these into triggers/checks.py or connections/")
