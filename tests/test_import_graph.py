"""The import graph of ``cianna_jax`` and ``pallas_kernels``, read from the source (ast).

Every ``import``/``from ... import`` of every module counts, including those inside
functions and ``if TYPE_CHECKING:`` blocks, and so do ``importlib.import_module("...")``
and ``__import__("...")`` calls with a literal name.  Relative imports are resolved, and
``from pkg import name`` points at the submodule ``pkg.name`` when there is one, else
at ``pkg`` (its ``__init__``).  The implicit edges to the parent packages that Python
runs first (``import a.b.c`` runs ``a`` and ``a.b``) are not counted.

Rules:

(a) no import cycle between modules (a cycle works only by the order of the imports
    and breaks when someone imports the modules in another order);
(b) a private name (``_x``; dunders such as ``__version__`` are public) may be imported
    only by a module of the SAME package directory as the module that defines it:
    ``from .common import _helper`` between siblings of ``cianna_jax/layers/`` is
    allowed, ``from cianna_jax.yolo.loss import _parse`` in ``pallas_kernels/`` or in
    ``cianna_jax/api.py`` is not.  A private module (``pallas_kernels/_compat.py``)
    counts as a private name of its package directory;
(c) no module imports JAX's private ``jax._src`` (its layout changes between releases).
"""

from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("cianna_jax", "pallas_kernels")


@dataclass(frozen=True)
class Import:
    src: str            # importing module
    target: str         # imported module (ours or external), resolved
    names: tuple        # names imported from ``target`` ("" for ``import target``)
    line: int

    def where(self) -> str:
        return f"{self.src}:{self.line}"


def _modules() -> dict[str, Path]:
    mods = {}
    for pkg in PACKAGES:
        for path in sorted((ROOT / pkg).rglob("*.py")):
            parts = list(path.relative_to(ROOT).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            mods[".".join(parts)] = path
    return mods


MODULES = _modules()


def _is_package(mod: str) -> bool:
    return MODULES[mod].name == "__init__.py"


def _directory(mod: str) -> str:
    """The package directory a module lives in (a package's ``__init__``: its own)."""
    return mod if _is_package(mod) else mod.rpartition(".")[0]


def _is_private(name: str) -> bool:
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


def _resolve_relative(src: str, level: int, module: str | None) -> str:
    base = _directory(src).split(".")
    if level > 1:
        base = base[: len(base) - (level - 1)]
    return ".".join(base + ([module] if module else []))


def _imports(mod: str) -> list[Import]:
    tree = ast.parse(MODULES[mod].read_text(), filename=str(MODULES[mod]))
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out += [Import(mod, alias.name, ("",), node.lineno) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            target = (_resolve_relative(mod, node.level, node.module) if node.level
                      else node.module)
            out.append(Import(mod, target, tuple(a.name for a in node.names), node.lineno))
        elif isinstance(node, ast.Call):
            func = node.func
            name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
            if (name in ("import_module", "__import__") and node.args
                    and isinstance(node.args[0], ast.Constant)
                    and isinstance(node.args[0].value, str)):
                out.append(Import(mod, node.args[0].value, ("",), node.lineno))
    return out


IMPORTS = [imp for mod in MODULES for imp in _imports(mod)]


def _edges() -> dict[tuple[str, str], list[Import]]:
    """(importer, imported) between our modules -> the import statements making it."""
    edges: dict[tuple[str, str], list[Import]] = {}
    for imp in IMPORTS:
        for name in imp.names:
            full = f"{imp.target}.{name}" if name and name != "*" else imp.target
            dst = full if full in MODULES else imp.target
            if dst in MODULES and dst != imp.src:
                statements = edges.setdefault((imp.src, dst), [])
                if imp not in statements:
                    statements.append(imp)
    return edges


EDGES = _edges()


def _cycles() -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan), sorted."""
    graph: dict[str, list[str]] = {m: [] for m in MODULES}
    for src, dst in EDGES:
        graph[src].append(dst)
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    comps: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                comps.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return sorted(comps)


def _one_cycle(comp: list[str]) -> list[str]:
    """A shortest cycle through the first module of a strongly connected component."""
    members = set(comp)
    start = comp[0]
    prev: dict[str, str] = {}
    frontier = [start]
    while frontier:
        nxt = []
        for v in frontier:
            for (src, dst) in sorted(EDGES):
                if src != v or dst not in members:
                    continue
                if dst == start:
                    path = [v]
                    while path[-1] != start:
                        path.append(prev[path[-1]])
                    return [start] + path[::-1][1:] + [start] if v != start else [start, start]
                if dst not in prev:
                    prev[dst] = v
                    nxt.append(dst)
        frontier = nxt
    return comp


def test_no_import_cycle():
    report = []
    for comp in _cycles():
        cycle = _one_cycle(comp)
        report.append(f"cycle among {len(comp)} modules: {', '.join(comp)}")
        report.append("  e.g. " + " -> ".join(cycle))
        for a, b in zip(cycle, cycle[1:]):
            where = ", ".join(f"{i.where()} ({', '.join(i.names) or 'import'})"
                              for i in EDGES[(a, b)])
            report.append(f"    {a} -> {b}: {where}")
    assert not report, "import cycles:\n" + "\n".join(report)


def _path(package: str) -> str:
    return package.replace(".", "/") + "/"


def _private_violations() -> list[str]:
    bad = []
    for imp in IMPORTS:
        if imp.target.split(".")[0] not in PACKAGES:
            continue
        src_dir = _directory(imp.src)
        for full in dict.fromkeys(f"{imp.target}.{n}" if n and n != "*" else imp.target
                                  for n in imp.names):
            parts = full.split(".")
            for i, part in enumerate(parts[1:], start=1):  # the first private component
                if not _is_private(part):
                    continue
                owner = ".".join(parts[:i])
                if owner in MODULES and not _is_package(owner):
                    owner = _directory(owner)  # a module's private name: its directory's
                if owner != src_dir:
                    bad.append(f"{imp.where()}: imports {'.'.join(parts[:i + 1])}, private "
                               f"to {_path(owner)} (importer in {_path(src_dir)})")
                break
    return sorted(set(bad), key=bad.index)


def test_no_private_name_imported_across_package_directories():
    bad = _private_violations()
    assert not bad, "private names imported across package directories:\n" + "\n".join(bad)


def test_no_jax_private_modules():
    bad = [f"{imp.where()}: {imp.target}" + (f" import {', '.join(imp.names)}"
                                              if imp.names != ("",) else "")
           for imp in IMPORTS
           for full in [imp.target] + [f"{imp.target}.{n}" for n in imp.names if n]
           if full == "jax._src" or full.startswith("jax._src.")]
    assert not bad, "imports of jax._src:\n" + "\n".join(sorted(set(bad)))


def test_the_graph_reader_itself():
    """The resolution rules on known edges, so that a silent reader cannot pass (a)-(c)."""
    assert "cianna_jax.yolo.config" in MODULES and "pallas_kernels" in MODULES
    assert _resolve_relative("cianna_jax.yolo.config", 2, "checks") == "cianna_jax.checks"
    assert _resolve_relative("cianna_jax.yolo", 1, "config") == "cianna_jax.yolo.config"
    assert _resolve_relative("cianna_jax.layers.dense", 2, None) == "cianna_jax"
    assert ("cianna_jax.yolo.config", "cianna_jax.checks") in EDGES
    assert ("cianna_jax", "cianna_jax.nn") in EDGES          # from . import ..., nn, ...
    assert _is_private("_x") and not _is_private("__version__")
