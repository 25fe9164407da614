"""End-to-end tests of the nxlua binary: the CLI as a subprocess, the REPL through a
pseudo-terminal (pexpect). NXLUA_BIN selects the binary (default: the release build)."""
import os
import pathlib
import subprocess

import pytest

import postgres_support

ROOT = pathlib.Path(__file__).resolve().parents[2]
BIN = os.environ.get("NXLUA_BIN", str(ROOT / ".build" / "release" / "nxlua"))


def child_pids(pid):
    """The child process ids of `pid`, from /proc."""
    out = []
    for task in pathlib.Path(f"/proc/{pid}/task").iterdir():
        try:
            out += [int(c) for c in (task / "children").read_text().split()]
        except OSError:
            pass
    return out


def thread_nices(pid):
    """{thread name: [nice values]} of a process's threads, from /proc (field 19 of stat)."""
    out = {}
    for task in pathlib.Path(f"/proc/{pid}/task").iterdir():
        try:
            stat = (task / "stat").read_text()
        except OSError:
            continue
        name = stat[stat.index("(") + 1:stat.rindex(")")]
        fields = stat[stat.rindex(")") + 2:].split()
        out.setdefault(name, []).append(int(fields[16]))
    return out


# The scheduler slice nxlua serve and nxlua macros ask for (CPUPriority.liveSliceNanoseconds).
LIVE_SLICE = 300_000


def thread_slices(pid):
    """[(thread name, scheduler slice in ns)] of a process's threads, from
    /proc/PID/task/TID/sched (Linux 6.12+ shows se.slice)."""
    out = []
    for t in pathlib.Path(f"/proc/{pid}/task").iterdir():
        try:
            name = (t / "comm").read_text().strip()
            line = next(x for x in (t / "sched").read_text().splitlines() if x.startswith("se.slice"))
            out.append((name, int(line.split(":")[1])))
        except (OSError, StopIteration, ValueError):
            pass
    return out


def default_slice():
    """The kernel's slice for a thread that asked for none (this test process's), or None
    when the kernel has no per-thread slices (before 6.12: nxlua's request is ignored)."""
    release = tuple(int(x) for x in os.uname().release.split(".")[:2] if x.isdigit())
    slices = thread_slices(os.getpid())
    if release < (6, 12) or not slices:
        return None
    return slices[0][1]


def pytest_configure(config):
    config.addinivalue_line("markers", "full_unwind: under AddressSanitizer, unwind every malloc fully "
                            "(a library without frame pointers allocates what LeakSanitizer must match)")


@pytest.fixture(autouse=True)
def full_unwind(request, monkeypatch):
    """scripts/test runs the sanitized binary with fast unwinding (ten times faster: a
    stack walked by frame pointers), which stops at the first library built without them.
    A test marked full_unwind gets DWARF unwinding on every malloc and the precise
    suppressions, for leaks whose only names are deeper (the blosc plugin's, under
    H5Z_pipeline, after HDF5 has unloaded the plugin at exit)."""
    if request.node.get_closest_marker("full_unwind") and "ASAN_OPTIONS" in os.environ:
        monkeypatch.setenv("ASAN_OPTIONS", os.environ["ASAN_OPTIONS"] + ":fast_unwind_on_malloc=0")
        monkeypatch.setenv("LSAN_OPTIONS", f"suppressions={ROOT / 'Tests' / 'lsan.supp'}:print_suppressions=0")


@pytest.fixture
def env(tmp_path, full_unwind):
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


@pytest.fixture(scope="session")
def postgres():
    """A throwaway PostgreSQL cluster on a free port for the session (one per pytest-xdist
    worker), removed afterwards. Yields its base URL; make databases with
    postgres_support.create_database."""
    base, stop = postgres_support.start_cluster()
    try:
        yield base
    finally:
        stop()


@pytest.fixture(params=["sqlite", "postgres"])
def journal(request, tmp_path):
    """An event journal location on each engine: a SQLite file, or a new database."""
    if request.param == "sqlite":
        return str(tmp_path / "j.sqlite")
    return postgres_support.create_database(request.getfixturevalue("postgres"))


@pytest.fixture
def another_journal(request, tmp_path, journal):
    """Makes further journals on the engine of `journal`: another_journal("name") is a
    SQLite file named so, or a new database of the same cluster."""
    def make(name):
        if postgres_support.is_postgres(journal):
            return postgres_support.create_database(request.getfixturevalue("postgres"))
        return str(tmp_path / f"{name}.sqlite")
    return make
