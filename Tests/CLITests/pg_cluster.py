"""A throwaway PostgreSQL cluster on loopback (free port, removed afterwards), started as
the postgres user when run as root (PostgreSQL refuses root). Shared by the test fixture
(postgres_support.py, conftest.py) and scripts/bench.py; needs no pytest."""
import glob
import os
import shutil
import socket
import subprocess
import tempfile
import uuid


class ClusterError(RuntimeError):
    pass


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def pg_program(name):
    for d in sorted(glob.glob("/usr/lib/postgresql/*/bin"), reverse=True):
        if os.path.exists(f"{d}/{name}"):
            return f"{d}/{name}"
    return shutil.which(name)


def start_cluster(durable=False, max_connections=200):
    """Starts a cluster; returns (base URL, stop function). Tests run without fsync;
    benchmarks (`durable`) with it, as a facility's server would."""
    initdb, pg_ctl = pg_program("initdb"), pg_program("pg_ctl")
    if not initdb or not pg_ctl:
        raise ClusterError("PostgreSQL is not installed (scripts/setup installs Debian's postgresql)")
    folder = tempfile.mkdtemp(prefix="nxlua-pg-")
    as_root = os.getuid() == 0
    if as_root:
        shutil.chown(folder, "postgres", "postgres")

    def as_postgres(*cmd):
        if as_root:
            cmd = ["su", "postgres", "-s", "/bin/sh", "-c", " ".join(f"'{c}'" for c in cmd)]
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
        if r.returncode != 0:
            raise ClusterError(f"{' '.join(cmd)}: exit status {r.returncode}\n{r.stdout}{r.stderr}")
    port = free_port()
    try:
        as_postgres(initdb, "-D", f"{folder}/data", "-A", "trust", "-U", "postgres", "--no-locale", "-E", "UTF8")
        as_postgres(pg_ctl, "-D", f"{folder}/data", "-l", f"{folder}/log", "-w", "-t", "120",
                    "-o", f"-p {port} -k {folder} -c listen_addresses=127.0.0.1 -c max_connections={max_connections}"
                    + ("" if durable else " -c fsync=off"), "start")
    except ClusterError:
        shutil.rmtree(folder, ignore_errors=True)
        raise

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
