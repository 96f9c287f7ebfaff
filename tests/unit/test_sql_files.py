"""include/sql and the code agree: every statement the code loads exists, and every file is loaded.

The code is read as syntax trees: calls of ``migration.sql.load`` / ``compose`` under any import alias
(``from migration import sql as q``, ``from migration.sql import load``, ...), and calls of functions
that pass one of their parameters on to the loader (``native_cdc.statement_rows(conn, "name")``). A name
held in a variable is followed to the literals assigned to it (``name = "a" if x else "b"``, ``for
name in ("a", "b")``); a name the test cannot follow fails the test, so every statement name stays a
literal in the code. Nothing is stood in: the test reads the source and SQL files only.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SQL_DIR = ROOT / "include" / "sql"
CODE = [*sorted((ROOT / "plugins").rglob("*.py")), *sorted((ROOT / "dags").rglob("*.py"))]
LOADER = ROOT / "plugins" / "migration" / "sql.py"
LOADER_FUNCTIONS = ("load", "compose")


@dataclass
class Found:
    names: dict[str, list[str]] = field(default_factory=dict)  # statement name -> ["file:line", ...]
    unresolved: list[str] = field(default_factory=list)

    def add(self, name: str, where: str) -> None:
        self.names.setdefault(name, []).append(where)


def _loader_aliases(tree: ast.Module) -> tuple[set[str], set[str]]:
    """(names bound to the migration.sql module, names bound to its load/compose functions)."""
    modules, functions = set(), set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.level == 0:
            for alias in node.names:
                if node.module == "migration" and alias.name == "sql":
                    modules.add(alias.asname or "sql")
                elif node.module == "migration.sql" and alias.name in LOADER_FUNCTIONS:
                    functions.add(alias.asname or alias.name)
        elif isinstance(node, ast.Import):
            modules |= {alias.asname for alias in node.names if alias.name == "migration.sql" and alias.asname}
    return modules, functions


def _is_loader_call(call: ast.Call, modules: set[str], functions: set[str]) -> bool:
    func = call.func
    if isinstance(func, ast.Attribute) and isinstance(func.value, ast.Name):
        return func.value.id in modules and func.attr in LOADER_FUNCTIONS
    return isinstance(func, ast.Name) and func.id in functions


def _strings(node: ast.AST) -> list[str] | None:
    """The literals an expression can evaluate to, or None when it is not made of literals."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return [node.value]
    if isinstance(node, ast.IfExp):
        body, orelse = _strings(node.body), _strings(node.orelse)
        return None if body is None or orelse is None else body + orelse
    if isinstance(node, ast.Tuple | ast.List | ast.Set):
        parts = [_strings(element) for element in node.elts]
        return None if any(p is None for p in parts) else [s for p in parts for s in p]
    return None


def _values_of(variable: str, scope: ast.AST) -> list[str] | None:
    """Every literal ``variable`` is bound to in ``scope`` (assignments and for-loop targets)."""
    values, bound = [], False
    for node in ast.walk(scope):
        if isinstance(node, ast.Assign) and any(isinstance(t, ast.Name) and t.id == variable for t in node.targets):
            found = _strings(node.value)
        elif isinstance(node, ast.For | ast.comprehension) and isinstance(node.target, ast.Name) \
                and node.target.id == variable:
            found = _strings(node.iter)
        else:
            continue
        if found is None:
            return None
        values += found
        bound = True
    return values if bound else None


def _scopes(tree: ast.Module) -> dict[ast.AST, ast.AST]:
    """Each node's innermost enclosing function (or the module)."""
    owner: dict[ast.AST, ast.AST] = {}

    def visit(node: ast.AST, scope: ast.AST) -> None:
        for child in ast.iter_child_nodes(node):
            owner[child] = scope
            visit(child, child if isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef) else scope)

    visit(tree, tree)
    return owner


def _argument(call: ast.Call, position: int, keyword: str) -> ast.AST | None:
    for kw in call.keywords:
        if kw.arg == keyword:
            return kw.value
    return call.args[position] if len(call.args) > position else None


def _parameters(function: ast.FunctionDef | ast.AsyncFunctionDef) -> list[str]:
    return [a.arg for a in (*function.args.posonlyargs, *function.args.args)]


def statements_loaded() -> Found:
    found = Found()
    trees = {path: ast.parse(path.read_text(), filename=str(path)) for path in CODE if path != LOADER}
    # Loader calls, and the functions that hand one of their parameters to the loader (wrappers).
    wrappers: dict[str, tuple[int, str]] = {}
    pending: list[tuple[Path, ast.Call, ast.AST, int, str]] = []
    for path, tree in trees.items():
        modules, functions = _loader_aliases(tree)
        owner = _scopes(tree)
        for node in ast.walk(tree):
            if isinstance(node, ast.Call) and _is_loader_call(node, modules, functions):
                pending.append((path, node, owner[node], 0, "name"))
        for _, call, scope, position, keyword in [p for p in pending if p[0] == path]:
            arg = _argument(call, position, keyword)
            if isinstance(arg, ast.Name) and isinstance(scope, ast.FunctionDef | ast.AsyncFunctionDef) \
                    and arg.id in _parameters(scope) and _values_of(arg.id, scope) is None:
                wrappers[scope.name] = (_parameters(scope).index(arg.id), arg.id)
    for path, tree in trees.items():
        owner = _scopes(tree)
        for node in ast.walk(tree):
            if isinstance(node, ast.Call):
                func = node.func
                name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", None)
                if name in wrappers:
                    pending.append((path, node, owner[node], *wrappers[name]))
    for path, call, scope, position, keyword in pending:
        where = f"{path.relative_to(ROOT)}:{call.lineno}"
        arg = _argument(call, position, keyword)
        if isinstance(arg, ast.Name) and isinstance(scope, ast.FunctionDef | ast.AsyncFunctionDef) \
                and scope.name in wrappers and arg.id == wrappers[scope.name][1]:
            continue  # the wrapper's own call: its callers are counted instead
        values = _strings(arg) if arg is not None else None
        if values is None and isinstance(arg, ast.Name):
            values = _values_of(arg.id, scope)
        if values is None:
            found.unresolved.append(where)
        for value in values or []:
            found.add(value, where)
    return found


def sql_files() -> set[str]:
    return {path.stem for path in SQL_DIR.glob("*.sql")}


def test_the_scan_finds_loader_calls_under_every_alias():
    found = statements_loaded()
    assert found.unresolved == [], "statement names must be literals (or variables bound to literals)"
    # One call per spelling: sqlfiles.load, sqlfiles.compose, a name chosen by if/else, and a wrapper.
    for name, spelling in [("local_clone_state", "sqlfiles.load"),
                           ("preflight_replica_identity_table", "sqlfiles.compose"),
                           ("slots_peek_pgoutput", "if/else"), ("native_cdc_missing_schemas", "statement_rows")]:
        assert name in found.names, f"{spelling}: {name} not found"


def test_every_statement_the_code_loads_exists():
    missing = {name: where for name, where in statements_loaded().names.items() if name not in sql_files()}
    assert missing == {}, "loaded by the code but not in include/sql"


def test_every_sql_file_is_loaded_somewhere():
    unused = sorted(sql_files() - set(statements_loaded().names))
    assert unused == [], "in include/sql but loaded nowhere: delete them or load them"


def test_the_loader_is_imported_one_way():
    """``from migration import sql as sqlfiles`` everywhere: one name to search for, and psycopg.sql cannot
    shadow it."""
    spellings = {}
    for path in CODE:
        if path == LOADER:
            continue
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            if isinstance(node, ast.ImportFrom) and node.module == "migration":
                spellings.update({f"{path.relative_to(ROOT)}:{node.lineno}": f"sql as {a.asname or 'sql'}"
                                  for a in node.names if a.name == "sql"})
            elif isinstance(node, ast.ImportFrom) and node.module == "migration.sql":
                spellings[f"{path.relative_to(ROOT)}:{node.lineno}"] = "from migration.sql import …"
    assert spellings, "the scan found no import of the loader"
    assert {where: how for where, how in spellings.items() if how != "sql as sqlfiles"} == {}
