"""A throwaway PostgreSQL cluster for the tests of the catalog and of the event journal
(real server, loopback only, free port, removed afterwards), and readers of both journal
engines with one interface (sqlite3's: execute with ? placeholders, fetchone/fetchall)."""
import glob
import os
import shutil
import socket
import sqlite3
import subprocess
import tempfile
import uuid

import pytest


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def pg_program(name):
    for d in sorted(glob.glob("/usr/lib/postgresql/*/bin"), reverse=True):
        if os.path.exists(f"{d}/{name}"):
            return f"{d}/{name}"
    return shutil.which(name)


def start_cluster(durable=False):
    """Starts a cluster (as the postgres user when run as root: PostgreSQL refuses root);
    returns (base URL, stop function). Tests run without fsync; benchmarks (`durable`)
    with it, as a facility's server would."""
    initdb, pg_ctl = pg_program("initdb"), pg_program("pg_ctl")
    if not initdb or not pg_ctl:
        pytest.fail("PostgreSQL is not installed (scripts/setup installs Debian's postgresql)")
    folder = tempfile.mkdtemp(prefix="nxlua-pg-")
    as_root = os.getuid() == 0
    if as_root:
        shutil.chown(folder, "postgres", "postgres")

    def as_postgres(*cmd):
        if as_root:
            cmd = ["su", "postgres", "-s", "/bin/sh", "-c", " ".join(f"'{c}'" for c in cmd)]
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
        assert r.returncode == 0, r.stdout + r.stderr
    port = free_port()
    as_postgres(initdb, "-D", f"{folder}/data", "-A", "trust", "-U", "postgres", "--no-locale", "-E", "UTF8")
    as_postgres(pg_ctl, "-D", f"{folder}/data", "-l", f"{folder}/log", "-w", "-t", "120",
                "-o", f"-p {port} -k {folder} -c listen_addresses=127.0.0.1 -c max_connections=200"
                + ("" if durable else " -c fsync=off"), "start")

    def stop():
        as_postgres(pg_ctl, "-D", f"{folder}/data", "-m", "immediate", "-w", "stop")
        shutil.rmtree(folder, ignore_errors=True)
    return f"postgres://postgres@127.0.0.1:{port}", stop


def create_database(base):
    """A new empty database of the cluster at `base`; returns its URL."""
    import psycopg
    name = "t_" + uuid.uuid4().hex[:12]
    with psycopg.connect(base + "/postgres", autocommit=True) as c:
        c.execute(f"CREATE DATABASE {name}")
    return f"{base}/{name}"


def is_postgres(location):
    return str(location).startswith(("postgres://", "postgresql://"))


class PostgresReader:
    """psycopg with sqlite3's ? placeholders; `with` commits and closes."""

    def __init__(self, url):
        import psycopg
        self.c = psycopg.connect(url, autocommit=True)

    def execute(self, sql, params=()):
        return self.c.execute(sql.replace("?", "%s"), params)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.c.close()


def journal_db(location):
    """A reader's connection to a journal of either engine; never creates a SQLite file."""
    if is_postgres(location):
        return PostgresReader(location)
    return sqlite3.connect(f"file:{location}?mode=rw", uri=True, timeout=30)


def journal_exists(location):
    if is_postgres(location):
        with PostgresReader(location) as c:
            return c.execute("SELECT to_regclass('journal_counter') IS NOT NULL").fetchone()[0]
    return os.path.exists(location)
