"""A newcomer's first hour with the `stopper` command: no tracebacks, honest exit codes.

Each test runs the CLI as a real process, in a temporary directory of its own, on an embedded
database that does not exist yet (STOPPER_DATABASE_EMBEDDED_PATH), with nothing else of the
environment's STOPPER_ settings.
"""

from __future__ import annotations

import importlib.metadata
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from stopper.adapters.db.engine import create_engine
from stopper.adapters.db.store import SqlStore
from stopper.config import DatabaseSettings
from stopper.demo import profile_makes_fail
from stopper.errors import SchemaNotReady
from stopper.registry import load_registry
from stopper.simulation.profiles import profile
from tests.servers import free_port


def stopper(
    cwd: Path, *args: str, env: dict[str, str] | None = None, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    """`stopper *args` in `cwd` on the embedded database `new.db` there (unless `env` says
    otherwise), as a newcomer would type it."""
    environment = {
        **{k: v for k, v in os.environ.items() if not k.startswith("STOPPER_")},
        "STOPPER_DATABASE_EMBEDDED_PATH": "new.db",
        **(env or {}),
    }
    return subprocess.run(
        [sys.executable, "-m", "stopper.cli", *args],
        cwd=cwd,
        env=environment,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def one_line(stderr: str) -> str:
    """The error a command printed: one line, and no traceback."""
    assert "Traceback" not in stderr, stderr
    lines = stderr.strip().splitlines()
    assert len(lines) == 1, stderr
    return lines[0]


# --- 1. commands that need the schema ------------------------------------------------------


def test_keys_add_on_a_database_never_migrated_brings_the_schema_up_as_serve_does(
    tmp_path: Path,
) -> None:
    added = stopper(tmp_path, "keys", "add", "--role", "operator", "--label", "A")

    assert added.returncode == 0, added.stderr
    assert "Traceback" not in added.stderr
    key_id = added.stdout.split()[1]
    assert added.stdout.splitlines()[-1].startswith(f"stk_{key_id}_")
    listed = stopper(tmp_path, "keys", "list")
    assert listed.returncode == 0, listed.stderr
    assert listed.stdout.split()[:3] == [key_id, "operator", "-"]
    # Four eyes compare people: an operator key names its holder.
    held = stopper(tmp_path, "keys", "add", "--role", "operator", "--holder", "li.wei")
    assert held.returncode == 0 and "holder li.wei" in held.stdout, held.stderr
    assert "li.wei" in stopper(tmp_path, "keys", "list").stdout


def test_without_migrations_at_start_a_command_says_what_to_run(tmp_path: Path) -> None:
    no_migrations = {"STOPPER_DATABASE_MIGRATE_ON_START": "false"}

    refused = stopper(tmp_path, "keys", "list", env=no_migrations)

    assert refused.returncode == 1
    line = one_line(refused.stderr)
    assert "run `stopper migrate`" in line
    assert "unreachable" not in line
    assert stopper(tmp_path, "migrate").returncode == 0
    assert stopper(tmp_path, "keys", "list", env=no_migrations).returncode == 0


def test_a_database_that_cannot_be_opened_is_one_line_and_debug_shows_the_traceback(
    tmp_path: Path,
) -> None:
    nowhere = {"STOPPER_DATABASE_EMBEDDED_PATH": str(tmp_path / "no" / "such" / "dir" / "x.db")}

    for command in (["keys", "list"], ["migrate"]):
        failed = stopper(tmp_path, *command, env=nowhere)
        assert failed.returncode == 1
        assert one_line(failed.stderr).startswith("stopper: database unreachable at ")
    debugged = stopper(tmp_path, "--debug", "keys", "list", env=nowhere)
    assert debugged.returncode == 1
    assert "Traceback" in debugged.stderr


def test_settings_that_do_not_parse_name_the_variable_in_one_line_without_its_value(
    tmp_path: Path,
) -> None:
    failed = stopper(tmp_path, "keys", "list", env={"STOPPER_API_PORT": "eighty"})

    assert failed.returncode == 2
    line = one_line(failed.stderr)
    assert "STOPPER_API_PORT" in line
    assert "eighty" not in line


async def test_the_store_says_schema_not_ready_not_unreachable_when_tables_are_missing(
    tmp_path: Path,
) -> None:
    engine = create_engine(DatabaseSettings(url=None, embedded_path=tmp_path / "bare.db"))
    try:
        with pytest.raises(SchemaNotReady, match="stopper migrate"):
            await SqlStore(engine, "stopper.stop-requests").list_api_keys()
    finally:
        await engine.dispose()


# --- 2. the demo's exit code ---------------------------------------------------------------


def test_a_demo_whose_holds_fail_for_no_fault_of_the_profile_exits_1_with_the_reason(
    tmp_path: Path,
) -> None:
    closed = f"http://127.0.0.1:{free_port()}"  # nothing listens there

    run = stopper(
        tmp_path, "demo", "--reports", "3", "--json", "--institutions-url", closed, timeout=240
    )

    assert run.returncode == 1, run.stderr
    summary = json.loads(run.stdout)
    holds = summary["holds"]
    assert holds > 0
    assert summary["holds_by_state"] == {"failed": holds}
    assert summary["holds_failed_otherwise"] == holds
    line = one_line(run.stderr)
    assert line.startswith(
        f"stopper demo: {holds} holds failed that the realistic profile does not make fail ("
    )
    assert "cannot reach" in line
    assert summary["problems"] == [line.removeprefix("stopper demo: ")]


def test_chaos_makes_holds_fail_and_realistic_and_instant_do_not() -> None:
    registry = load_registry()
    for name, fails in (("chaos", True), ("realistic", False), ("instant", False)):
        behaviours = profile(name, registry)
        assert {profile_makes_fail(behaviours[code], registry[code]) for code in registry} == {
            fails
        }, name


# --- 3. the version ------------------------------------------------------------------------


def test_version_answers_with_the_package_version(tmp_path: Path) -> None:
    answered = stopper(tmp_path, "--version")

    assert answered.returncode == 0, answered.stderr
    assert answered.stdout.strip() == f"stopper {importlib.metadata.version('stopper')}"
    assert not (tmp_path / "new.db").exists()
