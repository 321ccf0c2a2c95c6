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
import re
from collections.abc import Iterable, Iterator
from functools import cache
from pathlib import Path
from typing import NamedTuple

from harness.project import PACKAGE_ROOTS, PROJECT_PACKAGES, REPO

CONTRACT_PACKAGES = (
    "harness.core",
    "harness.spec",
    "harness.public_data",
    "harness.errors",
    "harness.config",
)
"""The stage contract's side and what it stands on: every stage imports them, and none computes
a result (the spec's values enter keys as the stage's slice, named datasets as input-file
content, settings from the environment as declared variables), so they are not part of any
stage's code digest, and the closure does not follow them."""

STAGE_PACKAGE = "harness.stages"
"""The built-in stages' package: their modules import nothing heavy at module level."""
_TARGET = re.compile(r"^(?:" + "|".join(PROJECT_PACKAGES) + r")(?:\.\w+)+(?::\w+)?$")
"""A string constant naming a project module (``-m`` children, lazy ``module:attr`` targets)."""


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


class _FileFacts(NamedTuple):
    """What one parse of a file gives."""

    digest: str
    deps: frozenset[str]
    """The project modules it depends on."""
    module_level_deps: frozenset[str]
    """Those its module level alone depends on (what importing it runs)."""
    empty: bool
    """Only docstrings and comments."""


@cache
def _facts(path: str, size: int, mtime_ns: int) -> _FileFacts:
    tree = ast.parse(Path(path).read_text(encoding="utf-8"), filename=path)
    deps = frozenset(_dependencies(ast.walk(tree), Path(path)))
    top = frozenset(_dependencies(_module_level(tree), Path(path)))
    normalized = ast.unparse(_strip_docstrings(tree))
    digest = hashlib.sha256(normalized.encode()).hexdigest()[:16]
    return _FileFacts(digest, deps, top, normalized.strip() in {"", "pass"})


def _module_level(tree: ast.AST) -> Iterator[ast.AST]:
    """The nodes that run when the module is imported: all but function bodies."""
    todo = [tree]
    while todo:
        node = todo.pop()
        yield node
        if not isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda):
            todo.extend(ast.iter_child_nodes(node))


def _stat_facts(path: Path) -> _FileFacts:
    st = path.stat()
    where = path if path.is_absolute() else path.resolve()  # project files come absolute
    return _facts(str(where), st.st_size, st.st_mtime_ns)


def file_digest(path: Path) -> str:
    """Digest of one module's normalised source (memoised on path, size and mtime)."""
    return _stat_facts(path).digest


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
    for candidate in (path, path.resolve()):
        if candidate.is_relative_to(REPO):
            return candidate.relative_to(REPO).as_posix()
    return str(path)


def code_digests(modules: tuple[str, ...] | list[str]) -> dict[str, str]:
    """``project-relative path -> digest`` of every file of the given modules and packages."""
    out: dict[str, str] = {}
    for name in modules:
        for f in module_files(name):
            out[display_path(f)] = file_digest(f)
    return dict(sorted(out.items()))


def imported_modules(path: Path, *, module_level: bool = False) -> set[str]:
    """Project modules a source file imports anywhere (top level or inside functions),
    resolved to the deepest existing module (``from a.b import c`` -> ``a.b.c`` when that is
    a module, else ``a.b``), and those it names as whole string constants (the module of a
    ``python -m`` child or of a lazily registered ``module:attr`` target). With
    ``module_level``, only those of the code that runs on import (not function bodies)."""
    facts = _stat_facts(path)
    return set(facts.module_level_deps if module_level else facts.deps)


def _dependencies(nodes: Iterable[ast.AST], path: Path) -> set[str]:
    package = _package_of(path)
    found: set[str] = set()
    for node in nodes:
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")
                base = ".".join(parts[: len(parts) - node.level + 1] + ([base] if base else []))
            names = [f"{base}.{a.name}" for a in node.names] + [base]
        elif isinstance(node, ast.Constant) and isinstance(node.value, str):
            if not _TARGET.match(node.value):
                continue
            names = [node.value.partition(":")[0]]
            if source_file(names[0]) is None:
                continue
        else:
            continue
        for n in names:
            if n.split(".")[0] in PROJECT_PACKAGES:
                found.add(_deepest_module(n))
    return found


def contract_module(name: str) -> bool:
    """Whether a module is on the contract's side (:data:`CONTRACT_PACKAGES`)."""
    return any(name == m or name.startswith(m + ".") for m in CONTRACT_PACKAGES)


def _trivial(name: str) -> bool:
    """A package whose ``__init__`` holds no code (importing it runs nothing)."""
    f = source_file(name)
    return f is not None and f.name == "__init__.py" and _stat_facts(f).empty


@cache
def code_closure(roots: tuple[str, ...]) -> tuple[str, ...]:
    """The project modules whose code computes what ``roots`` compute: the roots (a package
    root means every module in it), then every project module reachable from them by imports
    and by module names written as strings, and the packages that hold them (importing a
    module runs its package's ``__init__``), leaving out the contract's side and empty
    package ``__init__`` files. Another stage's module reached this way (a reader importing
    its result model) adds only what its module level imports: the work of a stage is in its
    function, whose imports run when the stage runs, not when its module is imported. Sorted;
    computed once per process (file digests are still taken afresh)."""
    start = [m for r in roots for m in _expand(r)]
    todo, seen = list(start), set()
    while todo:
        mod = todo.pop()
        if mod in seen or contract_module(mod):
            continue
        seen.add(mod)
        f = source_file(mod)
        # A plugin stage's module may live outside the project: read it where Python finds it.
        files = [f] if f is not None else module_files(mod) if mod in start else []
        imported_only = mod not in start and mod.startswith(STAGE_PACKAGE + ".")
        for file in files:
            todo.extend(imported_modules(file, module_level=imported_only))
        parent = mod.rpartition(".")[0]
        if parent:  # importing a module runs its packages' __init__ first
            todo.append(parent)
    return tuple(
        sorted(m for m in seen if (m in start or source_file(m) is not None) and not _trivial(m))
    )


def _expand(name: str) -> list[str]:
    """A module, or every module of a package."""
    f = source_file(name)
    if f is not None and f.name == "__init__.py":
        return [module_name(p) for p in module_files(name)]
    return [name]


def module_name(path: Path) -> str:
    """The dotted name a project file is imported as (a package's ``__init__`` gives the
    package's name)."""
    resolved = path.resolve()
    root = next((r for name, r in PACKAGE_ROOTS.items() if resolved.is_relative_to(r / name)), REPO)
    parts = resolved.relative_to(root).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _package_of(path: Path) -> str:
    """A module's package, or a package's own name ("" outside the project)."""
    try:
        name = module_name(path)
    except ValueError:
        return ""
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
