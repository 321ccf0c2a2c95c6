"""Digests of the code that computes a stage's result, for its cache key.

What counts is a module's behaviour, approximated by its syntax tree: the source is parsed,
docstrings are dropped and the tree is unparsed, so comments, docstrings, blank lines,
formatting and quote style change nothing, while any change to code (a new function, a
changed constant, a renamed variable, an added import) changes the digest.
"""

from __future__ import annotations

import ast
import hashlib
import importlib.util
import os
from functools import cache
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PACKAGE_ROOTS: dict[str, Path] = {"harness": REPO, "shopbench_kernels": REPO / "kernels"}
"""Each import package of the project and the directory it is imported from (the model-surgery
kernels live in ``kernels/shopbench_kernels``: ``kernels`` is Hugging Face's import name)."""
PROJECT_PACKAGES = tuple(PACKAGE_ROOTS)


def project_pythonpath(existing: str | None = None) -> str:
    """A ``PYTHONPATH`` putting this checkout's package roots first, then ``existing``: for
    child processes of an interpreter that does not have the project installed (or has an
    older copy)."""
    roots = [str(p) for p in dict.fromkeys(PACKAGE_ROOTS.values())]
    return os.pathsep.join([*roots, *filter(None, [existing])])


CONTRACT_MODULES = (
    "harness.contract",
    "harness.artifacts",
    "harness.atomic",
    "harness.registry",
    "harness.errors",
    "harness.config",
    "harness.codehash",
    "harness.stages.base",
    "harness.spec",
    "harness.datasets",
)
"""The stage contract's own modules: every stage imports them, and none computes a result
(the spec's values enter keys as the stage's slice, named datasets as input-file content), so
they are not part of any stage's code digest."""


def _strip_docstrings(tree: ast.AST) -> ast.AST:
    for node in ast.walk(tree):
        if not isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef):
            continue
        first = node.body[0] if node.body else None
        if (
            isinstance(first, ast.Expr)
            and isinstance(first.value, ast.Constant)
            and isinstance(first.value.value, str)
        ):
            node.body = node.body[1:] or [ast.Pass()]
    return tree


def normalized_source(source: str, filename: str = "<source>") -> str:
    """The source with comments, docstrings and formatting normalised away."""
    return ast.unparse(_strip_docstrings(ast.parse(source, filename=filename)))


@cache
def _digest(path: str, size: int, mtime_ns: int) -> str:
    text = Path(path).read_text(encoding="utf-8")
    return hashlib.sha256(normalized_source(text, path).encode()).hexdigest()[:16]


def file_digest(path: Path) -> str:
    """Digest of one module's normalised source (memoised on path, size and mtime)."""
    st = path.stat()
    return _digest(str(path.resolve()), st.st_size, st.st_mtime_ns)


def module_files(name: str) -> list[Path]:
    """The source files of a module, or of every module in a package (recursively).

    Raises:
        ModuleNotFoundError: No such module.
    """
    local = source_file(name)
    if local is not None:
        if local.name == "__init__.py":
            return sorted(p for p in local.parent.rglob("*.py") if "__pycache__" not in p.parts)
        return [local]
    spec = importlib.util.find_spec(name)
    if spec is None or spec.origin is None:
        raise ModuleNotFoundError(f"code dependency `{name}`: no such module", name=name)
    origin = Path(spec.origin)
    if spec.submodule_search_locations:
        root = origin.parent
        return sorted(p for p in root.rglob("*.py") if "__pycache__" not in p.parts)
    return [origin]


def display_path(path: Path) -> str:
    """A file's path relative to the project root (absolute outside it)."""
    try:
        return path.resolve().relative_to(REPO).as_posix()
    except ValueError:
        return str(path)


def code_digests(modules: tuple[str, ...] | list[str]) -> dict[str, str]:
    """``project-relative path -> digest`` of every file of the given modules and packages."""
    out: dict[str, str] = {}
    for name in modules:
        for f in module_files(name):
            out[display_path(f)] = file_digest(f)
    return dict(sorted(out.items()))


def imported_modules(path: Path) -> set[str]:
    """Project modules a source file imports anywhere (top level or inside functions),
    resolved to the deepest existing module (``from a.b import c`` -> ``a.b.c`` when that is
    a module, else ``a.b``)."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    package = _package_of(path)
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")
                base = ".".join(parts[: len(parts) - node.level + 1] + ([base] if base else []))
            names = [f"{base}.{a.name}" for a in node.names] + [base]
        else:
            continue
        for n in names:
            if n.split(".")[0] in PROJECT_PACKAGES:
                found.add(_deepest_module(n))
    return found


def module_name(path: Path) -> str:
    """The dotted name a project file is imported as (a package's ``__init__`` gives the
    package's name)."""
    resolved = path.resolve()
    root = next((r for name, r in PACKAGE_ROOTS.items() if resolved.is_relative_to(r / name)), REPO)
    parts = resolved.relative_to(root).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _package_of(path: Path) -> str:
    """A module's package, or a package's own name."""
    name = module_name(path)
    return name if path.name == "__init__.py" else name.rpartition(".")[0]


def source_file(name: str) -> Path | None:
    """The file of a project module or package (found on disk: nothing is imported)."""
    parts = name.split(".")
    if parts[0] not in PACKAGE_ROOTS:
        return None
    base = PACKAGE_ROOTS[parts[0]].joinpath(*parts)
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


@cache
def _deepest_module(name: str) -> str:
    parts = name.split(".")
    while parts:
        candidate = ".".join(parts)
        if source_file(candidate) is not None:
            return candidate
        parts.pop()
    return name
