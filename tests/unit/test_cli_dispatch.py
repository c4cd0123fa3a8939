"""The `costgate` dispatch table: every command is one module, imported only when its command runs, so a
cheap command never pays for another's imports (boto3, pynamodb, Powertools, numpy, plotly)."""

import importlib
import json
import os
import pkgutil
import subprocess
import sys

import pytest

from costgate_local import cli
from costgate_local.cli import COMMANDS, main

# Imports that cost a cheap command time: AWS clients, the data layer, Powertools, numpy, the stack, the charts.
HEAVY = {"boto3", "botocore", "pynamodb", "aws_lambda_powertools", "numpy", "moto", "anthropic", "plotly", "playwright"}
# The package's modules that are not commands.
SUPPORT = {"env", "formatting"}


def _run_in_a_fresh_interpreter(argv: list[str], stdin: str = "") -> tuple[int, str, set[str]]:
    """`main(argv)` in a new Python: its exit status, its stdout, and every module it had imported."""
    script = (
        "import json, sys\n"
        "from costgate_local.cli import main\n"
        "try:\n"
        f"    status = main({argv!r})\n"
        "except SystemExit as stop:\n"
        "    status = stop.code\n"
        "sys.stdout.flush()\n"
        "sys.stderr.write('\\n' + json.dumps({'status': status, 'modules': sorted(sys.modules)}) + '\\n')\n"
    )
    # A wide terminal keeps each command's help on one line of `--help`.
    environ = {**os.environ, "COLUMNS": "1000"}
    done = subprocess.run(
        [sys.executable, "-c", script],
        input=stdin,
        env=environ,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    reported = json.loads(done.stderr.strip().splitlines()[-1])
    return reported["status"], done.stdout, set(reported["modules"])


def _heavy(modules: set[str]) -> set[str]:
    return {name.split(".")[0] for name in modules} & HEAVY


def _commands_loaded(modules: set[str]) -> set[str]:
    return {name.removeprefix("costgate_local.cli.") for name in modules if name.startswith("costgate_local.cli.")}


def test_costgate_price_imports_only_its_own_module_and_nothing_heavy() -> None:
    # Given one usage object on stdin
    line = '{"model":"claude-opus-5-5","usage":{"input_tokens":1000,"output_tokens":500}}\n'

    # When running `costgate price` in a fresh interpreter
    status, out, modules = _run_in_a_fresh_interpreter(["price"], stdin=line)

    # Then it priced the line, without loading another command or any heavy library
    assert status == 0
    assert json.loads(out)["cost_usd"] == "0.014"
    assert _commands_loaded(modules) == {"price"}
    assert _heavy(modules) == set()


def test_costgate_help_lists_every_command_without_importing_one() -> None:
    status, out, modules = _run_in_a_fresh_interpreter(["--help"])

    assert status == 0
    assert "{" + ",".join(command.name for command in COMMANDS) + "}" in out
    for command in COMMANDS:
        assert command.help in out
    assert _commands_loaded(modules) == set()
    assert _heavy(modules) == set()


def test_the_import_check_sees_what_a_heavy_command_loads() -> None:
    # `costgate report` reads the ledger: its module brings pynamodb, and the check above would see it.
    status, _, modules = _run_in_a_fresh_interpreter(["report", "--help"])

    assert status == 0
    assert _commands_loaded(modules) >= {"report"}
    assert "price" not in _commands_loaded(modules)
    assert "pynamodb" in _heavy(modules)


def test_every_command_module_is_in_the_table_and_every_entry_has_its_module() -> None:
    modules = {info.name for info in pkgutil.iter_modules(cli.__path__)} - SUPPORT

    assert sorted(command.module for command in COMMANDS) == sorted(modules)
    assert len({command.name for command in COMMANDS}) == len(COMMANDS)


@pytest.mark.parametrize("command", COMMANDS, ids=lambda command: command.name)
def test_each_command_registers_its_parser_and_has_a_runner(
    command: cli.Command, capsys: pytest.CaptureFixture[str]
) -> None:
    module = importlib.import_module(f"costgate_local.cli.{command.module}")
    assert callable(module.register)
    assert callable(module.run)

    with pytest.raises(SystemExit) as stop:
        main([command.name, "--help"])

    assert stop.value.code == 0
    assert capsys.readouterr().out.startswith(f"usage: costgate {command.name}")


def test_no_command_named_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as stop:
        main([])

    assert stop.value.code == 2
    assert "the following arguments are required: command" in capsys.readouterr().err


def test_an_unknown_command_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as stop:
        main(["bill"])

    assert stop.value.code == 2
    assert "invalid choice: 'bill'" in capsys.readouterr().err
