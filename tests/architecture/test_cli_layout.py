"""The command line's shape: a command module imports at its top; an import inside a function says why."""

import ast
from pathlib import Path

CLI = Path(__file__).resolve().parents[2] / "local" / "costgate_local" / "cli"


def _hidden_imports(source: str) -> list[int]:
    """Line numbers of the imports that sit inside a function."""
    lines = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            lines += [inner.lineno for inner in ast.walk(node) if isinstance(inner, ast.Import | ast.ImportFrom)]
    return lines


def _explained(lines: list[str], number: int) -> bool:
    """A reason after the noqa (`# noqa: PLC0415 - why`), or a comment on the line above."""
    line, above = lines[number - 1], lines[number - 2].strip()
    return "# noqa: PLC0415 - " in line or ("# noqa: PLC0415" in line and above.startswith("#"))


def test_the_check_finds_a_hidden_import_and_its_reason() -> None:
    source = (
        "import json\n\ndef f():\n    import csv  # noqa: PLC0415\n\n"
        "def g():\n    # why\n    import os  # noqa: PLC0415\n"
    )
    lines = source.splitlines()
    assert _hidden_imports(source) == [4, 8]
    assert [_explained(lines, number) for number in (4, 8)] == [False, True]


def test_every_import_inside_a_command_function_says_why() -> None:
    modules = sorted(CLI.glob("*.py"))
    assert len(modules) >= 12
    for path in modules:
        source = path.read_text(encoding="utf-8")
        lines = source.splitlines()
        unexplained = [number for number in _hidden_imports(source) if not _explained(lines, number)]
        assert unexplained == [], f"{path.name}: move these imports to the top, or say why they wait"
