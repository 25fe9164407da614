"""End-to-end tests of the nxlua binary: the CLI as a subprocess, the REPL through a
pseudo-terminal (pexpect). NXLUA_BIN selects the binary (default: the release build)."""
import os
import pathlib
import subprocess

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]
BIN = os.environ.get("NXLUA_BIN", str(ROOT / ".build" / "release" / "nxlua"))


@pytest.fixture
def env(tmp_path):
    """A clean environment: no user init, a private history file, a module folder."""
    e = {k: v for k, v in os.environ.items() if not k.startswith(("NXLUA_", "LUA_"))}
    e["NXLUA_HISTORY"] = str(tmp_path / "history")
    e["HOME"] = str(tmp_path)
    e["TERM"] = "xterm"
    return e


@pytest.fixture
def nxlua(env):
    """Runs nxlua with arguments and optional stdin; returns the CompletedProcess."""
    def run(*args, stdin="", extra_env=None, cwd=None):
        e = dict(env)
        e.update(extra_env or {})
        return subprocess.run([BIN, *args], input=stdin, capture_output=True, text=True,
                              env=e, timeout=60, cwd=cwd)
    return run
