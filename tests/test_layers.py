"""The layer rules, checked on the source:

- the domain (``reviewqueue/*.py``) imports no web, UI or CLI framework and none of the
  shells (``api/``, ``ui/``, ``cli/``);
- the shells hold no SQL: they import neither SQLAlchemy nor the named queries;
- only the storage layer (``reviewqueue/store/``) reaches the drivers: nothing else
  imports a driver, a store submodule other than the public package and its named
  queries, or touches a driver connection;
- nobody reads SQLAlchemy's private compiled-statement attributes.
"""

import ast
import re
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "reviewqueue"
SHELLS = ("api", "ui", "cli")
FRAMEWORKS = {"fastapi", "starlette", "streamlit", "typer", "uvicorn", "click"}
DRIVERS = {"sqlite3", "psycopg", "psycopg2"}
DRIVER_ACCESS = re.compile(r"driver_connection|dbapi_connection|exec_driver_sql|\.connection\.connection")
PRIVATE_SQLALCHEMY = re.compile(
    r"_bind_processors|_result_columns|_cached_result_processor|construct_expanded_state"
)


def _modules():
    for path in sorted(PACKAGE.rglob("*.py")):
        rel = path.relative_to(PACKAGE)
        if rel.parts[0] == "migrations":
            continue
        yield rel, path.read_text()


def _imports(source: str, rel: Path) -> set[str]:
    """Absolute names of every module imported (relative imports resolved)."""
    names = set()
    package = ["reviewqueue", *rel.parts[:-1]]
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[: len(package) - node.level + 1]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            names.add(module)
            names.update(f"{module}.{alias.name}" for alias in node.names)
    return names


def _kind(rel: Path) -> str:
    if rel.parts[0] == "store":
        return "store"
    if rel.parts[0] in SHELLS or rel.name in SHELLS:
        return "shell"
    return "domain"


MODULES = list(_modules())


@pytest.mark.parametrize("rel,source", MODULES, ids=[str(r) for r, _ in MODULES])
def test_layer_rules(rel, source):
    kind = _kind(rel)
    imported = _imports(source, rel)
    roots = {name.split(".")[0] for name in imported}
    if kind in ("domain", "store"):
        assert not roots & FRAMEWORKS, f"{rel} imports {roots & FRAMEWORKS}"
        shells = {n for n in imported if re.match(r"reviewqueue\.(api|ui|cli)\b", n)}
        assert not shells, f"{rel} imports the shells: {shells}"
    if kind == "shell":
        assert not roots & {"sqlalchemy", "sqlmodel"}, (
            f"{rel} builds SQL ({roots & {'sqlalchemy', 'sqlmodel'}})"
        )
        assert "reviewqueue.store.queries" not in imported, f"{rel} runs named queries"
    if kind != "store":
        assert not roots & DRIVERS, f"{rel} imports a driver: {roots & DRIVERS}"
        internals = {
            n
            for n in imported
            if n.startswith("reviewqueue.store.")
            and not n.startswith("reviewqueue.store.queries")
            and n.count(".") >= 2
            and n.split(".")[2] in {"engine", "transactions", "sql", "stream", "migrate"}
        }
        assert not internals, f"{rel} imports storage internals: {internals}"
        assert not DRIVER_ACCESS.search(source), f"{rel} reaches for a driver connection"
    assert not PRIVATE_SQLALCHEMY.search(source), f"{rel} reads SQLAlchemy internals"


def test_the_rules_see_a_violation():
    """The checker itself: a shell that builds SQL, a domain module importing streamlit."""
    assert "sqlalchemy" in {
        n.split(".")[0] for n in _imports("from sqlalchemy import select", Path("ui/x.py"))
    }
    assert "reviewqueue.store.engine" in _imports("from .store.engine import make_engine", Path("items.py"))
    assert "reviewqueue.api" in _imports("from .. import api", Path("store/x.py"))
    assert _kind(Path("ui/review_page.py")) == "shell" and _kind(Path("claims.py")) == "domain"
