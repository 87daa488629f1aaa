"""The package's layers, checked from the source: every import (also the lazy ones inside
functions) goes to the same layer or a lower one, no two modules import each other in a circle,
and every module imports on its own in a fresh interpreter.

The layers, lowest first (docs/architecture.md explains each). A new module must be placed here,
so that where it sits stays visible."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src"

LAYERS: list[tuple[str, tuple[str, ...]]] = [
    ("base", ("errors", "registry", "paths", "cpu", "units", "decode")),
    ("numerics and files", ("ssim", "metrics", "losses", "viz", "packing", "device", "flops", "resize", "io")),
    ("models and data", ("models", "data")),
    ("runtime", ("runtime", "export")),
    ("inference", ("inference",)),
    ("evaluation, benchmark, training", ("evaluate", "bench", "train")),
    ("report", ("report",)),
    ("commands", ("commands", "app")),
    ("entry points", ("cli", "")),  # "" is the package itself (depthsmith/__init__.py)
]


def _modules() -> dict[str, Path]:
    out = {}
    for path in sorted((SRC / "depthsmith").rglob("*.py")):
        parts = path.relative_to(SRC).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        out[name] = path
    return out


def _layer(module: str) -> int:
    rest = module.removeprefix("depthsmith").removeprefix(".")
    top = rest.split(".")[0]
    for index, (_, names) in enumerate(LAYERS):
        if top in names:
            return index
    raise AssertionError(f"module {module} is in no layer: add its top-level name to LAYERS in {__file__}")


def _imports(module: str, path: Path, known: set[str]) -> set[str]:
    """depthsmith modules that ``module`` imports anywhere in its file (relative imports resolved)."""
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                base = ".".join(anchor + ([base] if base else []))
            targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in known else base for a in node.names]
        else:
            continue
        for target in targets:
            while target and target not in known:
                target = target.rpartition(".")[0]
            if target and target != module:
                found.add(target)
    return found


def _graph() -> dict[str, set[str]]:
    modules = _modules()
    return {m: _imports(m, p, set(modules)) for m, p in modules.items()}


def test_every_module_is_in_a_layer():
    for module in _modules():
        _layer(module)


def test_imports_go_down_the_layers():
    upward = [f"{m} ({LAYERS[_layer(m)][0]}) imports {d} ({LAYERS[_layer(d)][0]})"
              for m, deps in _graph().items() for d in sorted(deps) if _layer(d) > _layer(m)]
    assert not upward, "imports against the layer order:\n" + "\n".join(upward)


def test_the_library_never_imports_the_commands():
    offenders = [m for m, deps in _graph().items()
                 if any(d.startswith("depthsmith.commands") for d in deps)
                 and not m.startswith(("depthsmith.commands", "depthsmith.cli"))]
    assert not offenders


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for dep in graph.get(node, ()):
            if dep not in index:
                visit(dep)
                low[node] = min(low[node], low[dep])
            elif dep in on_stack:
                low[node] = min(low[node], index[dep])
        if low[node] == index[node]:
            component = []
            while True:
                top = stack.pop()
                on_stack.discard(top)
                component.append(top)
                if top == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def test_no_import_cycles():
    # A package's __init__ importing its own submodules is not a cycle; a submodule importing its
    # package back (or two modules importing each other) is.
    assert _cycles(_graph()) == []


def test_the_cycle_finder_finds_a_cycle():
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_the_import_reader_resolves_relative_and_lazy_imports(tmp_path):
    pkg = tmp_path / "depthsmith" / "sub"
    pkg.mkdir(parents=True)
    code = "from ..errors import InputError\n\ndef f():\n    from . import other\n    import depthsmith.io\n"
    (pkg / "mod.py").write_text(code)
    known = {"depthsmith.errors", "depthsmith.sub", "depthsmith.sub.other", "depthsmith.io", "depthsmith.sub.mod"}
    assert _imports("depthsmith.sub.mod", pkg / "mod.py", known) == {
        "depthsmith.errors", "depthsmith.sub.other", "depthsmith.io"}


@pytest.mark.slow
def test_every_module_imports_alone_in_a_fresh_interpreter():
    """Each module imported first, with no other depthsmith module loaded before it (an import
    cycle or a missing import shows up as an ImportError only in some orders)."""
    script = (
        "import importlib, sys\n"
        f"names = {sorted(_modules())!r}\n"
        "failed = []\n"
        "for name in names:\n"
        "    for key in [k for k in sys.modules if k == 'depthsmith' or k.startswith('depthsmith.')]:\n"
        "        del sys.modules[key]\n"
        "    try:\n"
        "        importlib.import_module(name)\n"
        "    except Exception as err:\n"
        "        failed.append(f'{name}: {type(err).__name__}: {err}')\n"
        "print('\\n'.join(failed))\n"
        "sys.exit(1 if failed else 0)\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=600,
                          env={**__import__("os").environ, "PYTHONPATH": str(SRC)})
    assert done.returncode == 0, done.stdout + done.stderr
