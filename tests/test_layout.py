"""The layout is the architecture (docs/architecture.md): `ls backend/` shows one package per
domain and only the modules everything shares, and no module reaches into another package's
private names (`_name`), neither by importing them nor through a module attribute."""

from __future__ import annotations

import ast
from pathlib import Path

from backend.paths import REPO_ROOT

BACKEND = REPO_ROOT / "backend"

PACKAGES = {
    "api", "audit", "chain", "cli", "client", "confirmations", "db", "escrows", "index", "notify",
    "oracle", "outbox", "web",
}
SHARED_MODULES = {
    "__init__.py", "canonical.py", "config.py", "errors.py", "i18n.py", "inputs.py",
    "logs.py", "paths.py", "services.py", "workers.py",
    "locale",  # the translation catalogues of i18n.py (data, not code)
}


def package_of(module: str) -> str:
    """`backend.oracle.terms` -> `backend.oracle`; a top-level module is its own package."""
    parts = module.split(".")
    return ".".join(parts[:2])


def module_name(path: Path) -> str:
    relative = path.relative_to(REPO_ROOT).with_suffix("")
    parts = list(relative.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def private_reaches(path: Path, module: str) -> list[str]:
    """Every `_name` of another backend package that `path` (the module `module`) imports or reads
    as an attribute, and every private of an object it holds (`self.node._send`)."""
    here = package_of(module)
    tree = ast.parse(path.read_text(), filename=str(path))
    found: list[str] = []
    imported_modules: dict[str, str] = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("backend"):
            for alias in node.names:
                target = f"{node.module}.{alias.name}"
                if alias.name.startswith("_") and package_of(node.module) != here:
                    found.append(f"imports {target}")
                imported_modules[alias.asname or alias.name] = target
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.startswith("backend"):
                    imported_modules[alias.asname or alias.name] = alias.name
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.Attribute)
            and isinstance(node.value, ast.Name)
            and node.attr.startswith("_")
            and not node.attr.startswith("__")
            and node.value.id in imported_modules
        ):
            target = imported_modules[node.value.id]
            if package_of(target) != here:
                found.append(f"reads {target}.{node.attr}")
        elif (
            isinstance(node, ast.Attribute)
            and node.attr.startswith("_")
            and not node.attr.startswith("__")
            and isinstance(node.value, ast.Attribute)
            and isinstance(node.value.value, ast.Name)
            and node.value.value.id == "self"
        ):
            # machinery shared by holding a second object and calling its privates
            found.append(f"reads self.{node.value.attr}.{node.attr}")
    return found


def test_backend_lists_one_package_per_domain_and_only_shared_modules() -> None:
    entries = {p.name for p in BACKEND.iterdir() if p.name != "__pycache__"}
    packages = {p.name for p in BACKEND.iterdir() if (p / "__init__.py").is_file()}
    assert packages == PACKAGES
    assert entries - packages == SHARED_MODULES


def test_no_module_reaches_into_another_packages_private_names() -> None:
    offences = {
        str(path.relative_to(REPO_ROOT)): reaches
        for path in sorted(BACKEND.rglob("*.py"))
        if "migrations" not in path.parts and (reaches := private_reaches(path, module_name(path)))
    }
    assert offences == {}


def test_the_private_name_check_sees_an_import_an_attribute_and_a_held_object(
    tmp_path: Path,
) -> None:
    probe = tmp_path / "probe.py"
    probe.write_text(
        "from backend.oracle.terms import _Open\nimport backend.chain.client as c\nc._x\n"
        "class A:\n    def f(self):\n        self.node._send()\n"
    )
    assert private_reaches(probe, "backend.escrows.probe") == [
        "imports backend.oracle.terms._Open",
        "reads backend.chain.client._x",
        "reads self.node._send",
    ]
