"""The REPL on a pseudo-terminal: prompts, continuation, completion, history, Ctrl-C,
Ctrl-D, as a user at a beamline console sees them."""
import time

import pexpect
import pytest

from conftest import BIN

UP = "\x1b[A"


@pytest.fixture
def repl(env):
    sessions = []

    def start():
        p = pexpect.spawn(BIN, env=env, encoding="utf-8", timeout=10, dimensions=(40, 100))
        p.expect("Ctrl-D exits")
        p.expect("> ")
        sessions.append(p)
        return p

    yield start
    for p in sessions:
        if p.isalive():
            p.terminate(force=True)


def finish(p):
    # Between prompts the terminal is in cooked mode and would eat a ^D typed ahead;
    # give the REPL a moment to be back in el_gets, as a human would.
    time.sleep(0.2)
    p.sendeof()
    p.expect(pexpect.EOF)
    p.close()
    return p.exitstatus


def test_banner_expression_and_ctrl_d(repl):
    p = repl()
    p.sendline("6 * 7")
    p.expect("42\r\n> ")
    assert finish(p) == 0


def test_continuation_prompt(repl):
    p = repl()
    p.sendline("for i = 1, 2 do")
    p.expect(">> ")
    p.sendline("print('line', i) end")
    p.expect("line\t1\r\nline\t2\r\n> ")
    assert finish(p) == 0


def test_error_prints_traceback_and_repl_goes_on(repl):
    p = repl()
    p.sendline("error('oops')")
    p.expect("stdin:1: oops")
    p.expect("stack traceback:")
    p.expect("> ")
    p.sendline("1 + 2")
    p.expect("3\r\n> ")
    assert finish(p) == 0


def test_completion_of_dotted_path_leaves_no_space(repl, env):
    p = repl()
    p.send("string.fo\t")
    time.sleep(0.3)
    p.sendline("('%03d', 7)")
    p.expect('"007"')
    p.expect("> ")
    finish(p)
    history = open(env["NXLUA_HISTORY"]).read()
    assert "string.format('%03d',\\0407)" in history  # completed with no space before '('


def test_completion_lists_several_candidates(repl):
    p = repl()
    p.send("nxlua.\t")
    p.expect("nxlua.sleep")
    p.expect("nxlua.time")
    p.sendline("version")
    p.expect('"0.1.0"')
    finish(p)


def test_completion_of_methods_after_colon(repl):
    p = repl()
    p.sendline("s = 'beam'")
    p.expect("> ")
    p.send("s:upp\t")
    time.sleep(0.3)
    p.sendline("()")
    p.expect('"BEAM"')
    finish(p)


def test_history_is_kept_across_runs(repl, env):
    p = repl()
    p.sendline("marker = 4242")
    p.expect("> ")
    finish(p)
    p = repl()
    p.send(UP)
    time.sleep(0.2)
    p.sendline("")
    p.expect("> ")
    p.sendline("marker")
    p.expect("4242\r\n> ")
    finish(p)


def test_ctrl_c_interrupts_a_lua_loop(repl):
    p = repl()
    p.sendline("n = 0; while true do n = n + 1 end")
    time.sleep(0.5)
    p.sendintr()
    p.expect("interrupted!")
    p.expect("> ")
    p.sendline("n > 0")
    p.expect("true\r\n> ")
    # the hook is disarmed: the next chunk runs to its end
    p.sendline("s = 0; for i = 1, 3000000 do s = s + 1 end; print(s)")
    p.expect("3000000\r\n> ")
    assert finish(p) == 0


def test_ctrl_c_interrupts_a_long_swift_call(repl):
    p = repl()
    p.sendline("nxlua.sleep(600)")
    time.sleep(0.5)
    started = time.monotonic()
    p.sendintr()
    p.expect("interrupted!")
    p.expect("> ")
    assert time.monotonic() - started < 5
    assert finish(p) == 0


def test_ctrl_c_at_the_prompt_drops_the_line(repl):
    p = repl()
    p.send("this is not lua")
    p.sendintr()
    p.expect("> ")
    p.sendline("1")
    p.expect("1\r\n> ")
    assert finish(p) == 0


def test_help_in_the_repl(repl):
    p = repl()
    p.sendline("help(nxlua.sleep)")
    p.expect("nxlua.sleep\\(seconds\\)")
    p.expect("Ctrl-C interrupts the wait")
    finish(p)


class StuckServer:
    """A server on loopback that accepts connections and then answers nothing (`mode`
    "silent": a server start that hangs) or sends a 200 with a large body a few bytes a
    second (`mode` "trickle": a big read over a slow link)."""

    def __init__(self, mode):
        import socket
        import threading
        self.mode, self.conns, self.stop = mode, [], threading.Event()
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.port = self.sock.getsockname()[1]
        threading.Thread(target=self.serve, daemon=True).start()

    def serve(self):
        import threading
        while not self.stop.is_set():
            try:
                c, _ = self.sock.accept()
            except OSError:
                return
            self.conns.append(c)
            threading.Thread(target=self.talk, args=(c,), daemon=True).start()

    def talk(self, c):
        try:
            c.recv(65536)
            if self.mode == "trickle":
                c.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\n"
                          b"Content-Length: 80000000\r\n\r\n")
                while not self.stop.is_set():
                    c.sendall(b"\0" * 64)
                    time.sleep(0.05)
            else:
                self.stop.wait()
        except OSError:
            pass

    def open_connections(self):
        import select
        alive = []
        for c in self.conns:
            try:
                r, _, _ = select.select([c], [], [], 0)
                if not (r and c.recv(1, __import__("socket").MSG_PEEK) == b""):
                    alive.append(c)
            except OSError:
                pass
        return alive

    def close(self):
        self.stop.set()
        self.sock.close()
        for c in self.conns:
            c.close()


@pytest.mark.parametrize("mode", ["silent", "trickle"])
def test_ctrl_c_stops_a_remote_wait_and_leaves_no_connection(repl, mode):
    # issue 21: a remote read over a slow link, or a server that hangs, ends within a
    # fraction of a second of Ctrl-C, back at the prompt, its connection closed
    server = StuckServer(mode)
    try:
        p = repl()
        # the first request of a load hangs, or its answer comes in at 1.3 kB/s
        p.sendline(f"r = nx.remote('http://127.0.0.1:{server.port}', {{timeout = 600}}); f = r:load('/scan.nxs')")
        time.sleep(1.0)
        started = time.monotonic()
        p.sendintr()
        p.expect("interrupted")
        p.expect("> ")
        elapsed = time.monotonic() - started
        assert elapsed < 5, elapsed  # generous: the point is that it returns at all
        deadline = time.monotonic() + 5
        while server.open_connections() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not server.open_connections(), "the interrupted request's connection is still open"
        p.sendline("1 + 1")
        p.expect("2\r\n> ")
        assert finish(p) == 0
    finally:
        server.close()


def test_ctrl_c_stops_a_wait_for_a_change(repl, tmp_path):
    # r:wait on nxlua serve, for a file that does not change: Ctrl-C ends it at once,
    # and the connection works afterwards
    import h5py
    from test_serve import Server
    folder = tmp_path / "served"
    folder.mkdir()
    with h5py.File(folder / "still.h5", "w") as f:
        f["x"] = [1, 2, 3]
    server = Server(folder, None, "--allow-anonymous", log=tmp_path / "serve.log")
    try:
        p = repl()
        p.sendline(f"r = nx.remote('{server.url}'); v = r:wait('/still.h5'); r:wait('/still.h5', v, 50)")
        assert interrupt_and_time(p) < 5  # generous: the point is that it returns at all
        p.sendline("print(select(2, r:wait('/still.h5', v, 0.1)))")
        p.expect("false\r\n> ")
        assert finish(p) == 0
    finally:
        assert server.stop() == 0


def interrupt_and_time(p, after=1.0):
    """Ctrl-C after `after` seconds; the seconds until the prompt is back."""
    time.sleep(after)
    started = time.monotonic()
    p.sendintr()
    p.expect("interrupted")
    p.expect("> ")
    return time.monotonic() - started


def test_ctrl_c_stops_a_catalog_watch(repl, tmp_path):
    # issue 21: cat:watch waits for entries that never come; Ctrl-C ends it and the
    # catalog stays usable
    db = tmp_path / "cat.sqlite"
    p = repl()
    p.sendline(f"cat = nx.catalog('{db}'); n = 0")
    p.expect("> ")
    p.sendline("cat:watch('sample:Nothing', function(e) n = n + 1 end)")
    assert interrupt_and_time(p) < 5
    p.sendline("print(cat:count(''), n)")
    p.expect("0\t0\r\n> ")
    assert finish(p) == 0


@pytest.mark.parametrize("what", ["catalog", "journal"])
def test_ctrl_c_stops_a_postgres_connect_that_hangs(repl, tmp_path, what):
    # issue 21: a catalog or journal on a PostgreSQL server that accepts and never
    # answers: Ctrl-C returns to the prompt and closes the connection
    server = StuckServer("silent")
    url = f"postgres://nxlua@127.0.0.1:{server.port}/nxlua"
    try:
        p = repl()
        if what == "catalog":
            p.sendline(f"cat = nx.catalog('{url}')")
        else:
            frames = tmp_path / "frames"
            frames.mkdir()
            p.sendline(f"r = detector.stack{{watch = '{frames}', out = '{tmp_path}/s.nxs', journal = '{url}', quiet = true}}")
        assert interrupt_and_time(p) < 5
        deadline = time.monotonic() + 5
        while server.open_connections() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not server.open_connections(), "the interrupted connection is still open"
        p.sendline("1 + 1")
        p.expect("2\r\n> ")
        assert finish(p) == 0
    finally:
        server.close()
