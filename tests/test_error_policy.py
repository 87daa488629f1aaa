"""User errors are InputErrors (printed as ``error: ...``, exit 2); anything else is a bug and keeps
its traceback (exit 1). A plain ValueError in src is allowed only where it marks a code error, and
says so in a comment (``# internal: ...``)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import depthsmith.commands.catalog as catalog
from depthsmith.cli import main
from depthsmith.errors import InputError
from depthsmith.train.config import ConfigError

SRC = Path(__file__).resolve().parents[1] / "src" / "depthsmith"


def _plain_value_errors() -> list[str]:
    """``raise ValueError(...)`` statements without an ``# internal`` comment on their lines."""
    found = []
    for path in sorted(SRC.rglob("*.py")):
        text = path.read_text()
        lines = text.splitlines()
        for node in ast.walk(ast.parse(text, str(path))):
            if not (isinstance(node, ast.Raise) and node.exc is not None):
                continue
            exc = node.exc.func if isinstance(node.exc, ast.Call) else node.exc
            if isinstance(exc, ast.Name) and exc.id == "ValueError":
                statement = "\n".join(lines[node.lineno - 1:node.end_lineno])
                if "# internal" not in statement:
                    found.append(f"{path.relative_to(SRC)}:{node.lineno}")
    return found


def test_every_plain_value_error_in_src_is_marked_internal() -> None:
    assert _plain_value_errors() == []


def test_the_walk_finds_an_unmarked_value_error(tmp_path, monkeypatch) -> None:
    """The check above can fail: a module with an unmarked raise is reported."""
    fake = tmp_path / "depthsmith"
    fake.mkdir()
    (fake / "m.py").write_text("def f(x):\n    if x:\n        raise ValueError('bad x')\n"
                               "    raise ValueError('never')  # internal: unreachable\n")
    monkeypatch.setattr(f"{__name__}.SRC", fake)
    assert _plain_value_errors() == ["m.py:3"]


def test_every_value_error_subclass_is_an_input_error_or_internal() -> None:
    """Exception classes of src deriving from ValueError directly must say they are internal;
    the others derive from InputError (a ValueError)."""
    bad = []
    for path in sorted(SRC.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if (isinstance(node, ast.ClassDef) and any(isinstance(b, ast.Name) and b.id == "ValueError" for b in node.bases)
                    and not (ast.get_docstring(node) or "").startswith("Internal")
                    and not (path.name == "errors.py" and node.name == "InputError")):
                bad.append(f"{path.relative_to(SRC)}:{node.lineno} {node.name}")
    assert bad == []
    assert issubclass(ConfigError, InputError)


def test_cli_user_error_is_one_line_and_exit_2(capsys) -> None:
    assert main(["eval", "--model", "no-such-model-folder-x", "--data", "no-such.yaml"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "Traceback" not in err


def test_cli_internal_bug_keeps_its_traceback_and_exit_1(capsys, monkeypatch) -> None:
    def broken() -> int:
        raise ValueError("an internal bug")  # internal: the test's stand-in for a bug

    monkeypatch.setattr(catalog, "models_cli", broken)
    assert main(["models"]) == 1
    err = capsys.readouterr().err
    assert "Traceback (most recent call last)" in err and "ValueError: an internal bug" in err
    assert "internal error (a bug, not your input)" in err and "error: an internal bug" not in err


@pytest.mark.parametrize("argv", [["models"]])
def test_cli_success_is_exit_0(argv, capsys) -> None:
    assert main(argv) == 0
