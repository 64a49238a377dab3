"""Every adapter is a pure translator (gateway/adapter.py): it imports the contract, msgspec
and pure standard modules only, never I/O, clocks, randomness or logging, and it opens with a
docstring (where its lossy conversions are listed)."""

import ast
import sys
from pathlib import Path

import pytest

ADAPTERS = Path(__file__).resolve().parent.parent / "adapters"
SOURCES = sorted(p for p in ADAPTERS.rglob("*.py") if p.name != "__init__.py" or p.parent != ADAPTERS)
IMPURE = {"logging", "random", "time", "socket", "os", "io", "pathlib", "subprocess", "urllib",
          "http", "uuid", "secrets", "asyncio", "threading"}
PURE = {"urllib.parse"}  # string work only (form bodies)


def _imports(tree: ast.AST):
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            yield from ((alias.name, 0) for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            yield node.module or "", node.level


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: str(p.relative_to(ADAPTERS)))
def test_adapter_imports_only_the_contract(path: Path) -> None:
    tree = ast.parse(path.read_text())
    if path.name == "__init__.py" or path.parent == ADAPTERS:  # the module a registry entry names
        assert ast.get_docstring(tree), "a module docstring first"
    package = ".".join(path.relative_to(ADAPTERS.parent).parent.parts)
    for module, level in _imports(tree):
        top = module.split(".")[0]
        allowed = (
            module == "gateway.adapter"
            or level > 0  # its own package's modules
            or (package != "adapters" and module.startswith(package))
            or top in ("msgspec", "__future__")
            or module in PURE
            or (top in sys.stdlib_module_names and top not in IMPURE)
        )
        assert allowed, f"{path.name} imports {module}"


def test_every_builtin_adapter_is_checked() -> None:
    from gateway import registry

    names = {p.stem if p.parent == ADAPTERS else p.parent.name for p in SOURCES}
    assert set(registry.BUILTIN) <= names
