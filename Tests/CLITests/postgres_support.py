"""The throwaway PostgreSQL cluster of pg_cluster.py for the tests of the catalog and of
the event journal (real server, loopback only, free port, removed afterwards), and
readers of both journal engines with one interface (sqlite3's: execute with ?
placeholders, fetchone/fetchall)."""
import os
import sqlite3

import pytest

import pg_cluster
from pg_cluster import create_database, free_port, pg_program  # noqa: F401  (the tests import them from here)


def start_cluster(durable=False):
    """pg_cluster.start_cluster, a failure to start being a test failure."""
    try:
        return pg_cluster.start_cluster(durable=durable)
    except pg_cluster.ClusterError as e:
        pytest.fail(str(e))


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
