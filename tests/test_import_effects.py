"""No import-time side effects, no private Lightning names (issue #20)."""

from __future__ import annotations

import ast
import os
import subprocess
import sys
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src" / "depthsmith"


def _trees() -> list[tuple[Path, ast.AST]]:
    return [(p, ast.parse(p.read_text(), str(p))) for p in sorted(SRC.rglob("*.py"))]


def test_no_module_changes_the_umask() -> None:
    calls = [f"{p.relative_to(SRC)}:{n.lineno}" for p, tree in _trees() for n in ast.walk(tree)
             if isinstance(n, ast.Call) and isinstance(n.func, ast.Attribute) and n.func.attr == "umask"]
    assert calls == []


def test_no_private_lightning_import() -> None:
    private = [f"{p.relative_to(SRC)}:{n.lineno} {a.name}" for p, tree in _trees() for n in ast.walk(tree)
               if isinstance(n, ast.ImportFrom) and (n.module or "").split(".")[0] in ("lightning", "pytorch_lightning")
               for a in n.names if a.name.startswith("_")]
    assert private == []


def test_atomic_writes_get_the_permissions_of_a_plain_open(tmp_path: Path) -> None:
    """The temp file is created 0666 minus the umask, as open() would, with the umask untouched."""
    code = ("import os, sys; os.umask(0o027); from depthsmith.train.callbacks import atomic_write_text; "
            "p = sys.argv[1]; atomic_write_text(p + '/a.txt', 'x'); "
            "print(oct(os.stat(p + '/a.txt').st_mode & 0o777), oct(os.umask(0)))")
    out = subprocess.run([sys.executable, "-c", code, str(tmp_path)], capture_output=True, text=True,
                         env={**os.environ, "PYTHONPATH": str(SRC.parent)}, check=True).stdout.split()
    assert out == ["0o640", "0o27"]
