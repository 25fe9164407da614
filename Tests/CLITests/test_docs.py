"""The documentation as tests: every code block of README.md and docs/*.md runs as a new
user would run it, against the binary, and where a page shows what it prints, that is
compared with what nxlua prints. So the docs cannot drift from the program.

How a page's blocks are read (the markdown conventions the pages follow):

- ```lua: run through nxlua in document order, in the page's folder. Consecutive Lua
  blocks share one Lua state (one chunk whose line numbers are the page's, so an error
  names the page and its line); a shell block or a transcript between them starts a new
  state. `stmt  --> text` says what that line prints (everything `print` writes from
  it); lines holding only `--> text` continue it. In expected text `...` matches
  anything (a line of only `...` any number of lines), and text after two spaces
  following the output is commentary.
- A ```lua block whose first line is `-- NAME.lua` (or after `<!-- doc-test: file NAME -->`)
  is a file the page asks the reader to save: it is written into the page's folder before
  anything runs, and it must compile. Files under `macros/` also run under `nxlua macros`
  on the events of a replayed stack and of `nxlua trigger`, and no handler may fail.
- ```sh: a bash script (every command must succeed) in the page's folder, with nxlua on
  PATH. An untagged block right after a code block is that block's output (stdout and
  stderr together).
- An untagged block whose first line starts with `$ ` or `> ` is a terminal transcript:
  `$ CMD` runs CMD and the lines after it are its output; `> ` and `>> ` lines are typed
  into the REPL on a pseudo-terminal (`<TAB>` presses Tab; an output starting with `^C`
  means Ctrl-C while the line runs), each followed by what it prints.
- ```python blocks run with the test venv's Python (numpy, h5py, requests, h5pyd).
- A `nxlua serve DIR ...` line of a shell block starts the page's server in the
  background (on a free port: the page's `beamline:5101` is mapped to it), until the
  page starts another one or ends; its first line is part of the block's output.
- ```text blocks are not code (file layouts, usage synopses): not run.
- `<!-- doc-test: skip (reason) -->` before a block skips it; each skip is reported as a
  skipped test with its reason (pytest -rs lists them).

The pages' example folders are mapped into the test's: `/data` (shared frame folders and
served files), `/etc/nxlua` and the home folder (`/root` in the pages). What
legitimately varies is normalised in process output (not in Lua `-->` lines): those
folders, the server's port, version numbers in the version banner, timings (`0.3 ms`,
`1.2 s`, `3061 frames/s`).

The page's folder holds what the pages expect: `scripts` (a link to the checkout's),
`scan.nxs` (the demo scan, written by scripts/examples/make_demo.py with h5py, as
scripts/nxlua writes it, also in the home folder's cache where scripts/nxlua keeps it),
what PAGE_SETUP makes for a page, and, shared by every page, `/data` (frame folders
scan7, scan8 with 3600 small frames and scan42, and beamtime/sample_300K.nxs), so CI
needs nothing from outside the clone. Under AddressSanitizer (NXLUA_SANITIZED=1) every
wait is longer and the processes other than the REPL unwind fast (see Page); nothing is
skipped."""
import dataclasses
import json
import os
import pathlib
import re
import shutil
import signal
import sqlite3
import subprocess
import sys
import threading
import time

import pexpect
import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]
BIN = os.environ.get("NXLUA_BIN", str(ROOT / ".build" / "release" / "nxlua"))
SANITIZED = os.environ.get("NXLUA_SANITIZED") == "1"
SLOW = 6 if SANITIZED else 1
PAGES = ["README.md"] + sorted(str(p.relative_to(ROOT)) for p in (ROOT / "docs").glob("*.md"))
FENCE = re.compile(r"^(\s*)```(\S*)\s*$")
DIRECTIVE = re.compile(r"^<!--\s*doc-test:\s*(\w+)\s*(.*?)\s*-->$")
FILE_COMMENT = re.compile(r"^--\s+([\w./-]+\.lua)\s*$")


# ---------------------------------------------------------------- reading the pages

@dataclasses.dataclass
class Block:
    page: str
    line: int                 # the line of the first code line (1-based)
    lang: str
    lines: list
    directive: tuple = None   # ("skip", "(reason)"), ("file", "NAME")
    output_of: "Block" = None  # an untagged block right after a code block
    output: "Block" = None

    @property
    def where(self):
        return f"{self.page}:{self.line}"

    @property
    def text(self):
        return "\n".join(self.lines) + "\n"

    @property
    def kind(self):
        d = self.directive[0] if self.directive else None
        if d == "skip":
            return "skip"
        if self.output_of is not None:
            return "output"
        if self.lang == "lua":
            return "file" if self.file_name else "lua"
        if self.lang in ("sh", "python", "text"):
            return self.lang
        if self.lang == "" and self.lines and self.lines[0].startswith(("$ ", "> ")):
            return "transcript"
        return "unknown"

    @property
    def file_name(self):
        if self.directive and self.directive[0] == "file":
            return self.directive[1]
        if self.lang == "lua" and self.lines and FILE_COMMENT.match(self.lines[0]):
            return FILE_COMMENT.match(self.lines[0]).group(1)
        return None


def read_blocks(page):
    lines = (ROOT / page).read_text().split("\n")
    blocks, i, previous_end = [], 0, None
    while i < len(lines):
        m = FENCE.match(lines[i])
        if not m:
            i += 1
            continue
        indent, lang = m.group(1), m.group(2)
        j = i + 1
        while j < len(lines) and lines[j].strip() != "```":
            j += 1
        body = [l[len(indent):] if l.startswith(indent) else l for l in lines[i + 1:j]]
        k = i - 1
        while k >= 0 and not lines[k].strip():
            k -= 1
        directive = None
        d = DIRECTIVE.match(lines[k].strip()) if k >= 0 else None
        if d:
            directive = (d.group(1), d.group(2))
            k -= 1
            while k >= 0 and not lines[k].strip():
                k -= 1
        b = Block(page, i + 2, lang, body, directive)
        if lang == "" and previous_end is not None and k == previous_end and blocks and not d:
            b.output_of, blocks[-1].output = blocks[-1], b
        blocks.append(b)
        previous_end = j
        i = j + 1
    return blocks


# ---------------------------------------------------------------- comparing output

TIMING = re.compile(r"\b\d+(?:\.\d+)?(?: ?(?:ms|s|frames/s|MB/s))\b")
VERSION_LINE = re.compile(r"^nxlua \d")


def line_matches(expected, actual):
    """`expected` (a doc line) against one printed line: `...` matches anything, and text
    after two or more spaces following the whole output is commentary."""
    expected, actual = expected.rstrip(), actual.rstrip()

    def full(e):
        pattern = ".*".join(re.escape(part) for part in e.split("..."))
        return re.fullmatch(pattern, actual, re.S) is not None

    if full(expected):
        return True
    for m in re.finditer(r" {2,}", expected):
        head = expected[:m.start()]
        if head.strip() and actual.strip() and full(head):
            return True
    return False


def lines_match(expected, actual):
    """Lists of lines; an expected line of only `...` matches any number of lines."""
    memo = {}

    def go(i, j):
        if (i, j) in memo:
            return memo[i, j]
        if i == len(expected):
            r = j == len(actual)
        elif expected[i].strip() == "...":
            r = go(i + 1, j) or (j < len(actual) and go(i, j + 1))
        else:
            r = j < len(actual) and line_matches(expected[i], actual[j]) and go(i + 1, j + 1)
        memo[i, j] = r
        return r

    return go(0, 0)


def strip_blank_ends(lines):
    lines = list(lines)
    while lines and not lines[-1].strip():
        lines.pop()
    while lines and not lines[0].strip():
        lines.pop(0)
    return lines


def show(expected, actual):
    return ("    expected:\n" + "".join(f"      | {l}\n" for l in expected)
            + "    printed:\n" + "".join(f"      | {l}\n" for l in actual))


# ---------------------------------------------------------------- the page's folder

@pytest.fixture(scope="session")
def shared(tmp_path_factory):
    """What every page may use: the demo scan and the frame folders under /data."""
    base = tmp_path_factory.mktemp("docs-shared")
    demo = base / "scan.nxs"
    r = subprocess.run([sys.executable, str(ROOT / "scripts/examples/make_demo.py"), str(demo)],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    data = base / "data"
    for d in ("scan7", "scan8", "scan42", "beamtime"):
        (data / d).mkdir(parents=True)
    shutil.copy(demo, data / "beamtime" / "sample_300K.nxs")
    # one Pilatus 100K frame for scan7 and scan42 (each frame its number, as a detector
    # writes them), and a 16 x 16 cut of it copied 3600 times for scan8
    code = f"""
    for n = 1, 10 do
      local frame, text = detector.synthetic{{seed = n, frame = n, modules = {{1, 1}}, spots = 20}}
      detector.write(string.format("{data}/scan7/scan7_%05d.cbf", n), frame, text)
      if n == 1 then detector.write("{base}/small.cbf", frame["0:16, 0:16"]:copy(), text) end
    end"""
    r = subprocess.run([BIN, "-e", code], capture_output=True, text=True, timeout=120 * SLOW)
    assert r.returncode == 0, r.stderr
    small = (base / "small.cbf").read_bytes()
    for n in range(1, 3601):
        (data / "scan8" / f"scan8_{n:05d}.cbf").write_bytes(small)
    for n in range(1, 101):
        (data / "scan42" / f"scan42_{n:05d}.cbf").write_bytes(small)
    return {"base": base, "demo": demo, "data": data}


class Page:
    """A page's folder, environment and the substitutions that map the doc's paths."""

    def __init__(self, page, folder, shared):
        self.page, self.dir, self.shared = page, folder, shared
        self.home = folder / "home"
        (self.home / ".cache/nxlua/demo").mkdir(parents=True)
        shutil.copy(shared["demo"], self.home / ".cache/nxlua/demo/scan.nxs")
        shutil.copy(shared["demo"], folder / "scan.nxs")
        (folder / "scripts").symlink_to(ROOT / "scripts")
        env = {k: v for k, v in os.environ.items() if not k.startswith(("NXLUA_", "LUA_"))}
        env.update(HOME=str(self.home), NXLUA_HISTORY=str(self.home / ".nxlua_history"), TERM="xterm",
                   PATH=str(pathlib.Path(BIN).parent) + os.pathsep + str(pathlib.Path(sys.executable).parent)
                   + os.pathsep + env.get("PATH", "/usr/bin:/bin"))
        # A progress bar appears on a terminal once a reduction takes 0.5 s: a matter of
        # speed (the sanitized binary's), so the REPL sessions run without it.
        env["NXLUA_PROGRESS"] = "0"
        self.repl_env = dict(env)
        if SANITIZED:
            # Stacking 3600 frames with full unwinding on every malloc took 90 s, 5 s
            # with fast unwinding: everything but the REPL unwinds fast, as the Swift tests
            # do in scripts/test, with their suppressions (cbflib has no frame pointers).
            # The REPL keeps full unwinding (libedit has none either).
            options = re.sub(r"(?<!\w)fast_unwind_on_malloc=\d", "", env.get("ASAN_OPTIONS", "")).strip(":")
            env["ASAN_OPTIONS"] = (options + ":" if options else "") + "fast_unwind_on_malloc=1"
            supp = folder / "lsan-fast.supp"
            supp.write_text((ROOT / "Tests/lsan.supp").read_text() + (ROOT / "Tests/lsan-fast-unwind.supp").read_text())
            lsan = re.sub(r"(?<!\w)suppressions=[^:]*", "", env.get("LSAN_OPTIONS", "")).replace("::", ":").strip(":")
            env["LSAN_OPTIONS"] = (lsan + ":" if lsan else "") + f"suppressions={supp}"
        self.env = env
        self.failures = []
        self.background = []
        self.server, self.port = None, None

    def code(self, text):
        """The doc's code with its example folders and server mapped into the test's: /data
        (the beamline's data), /etc/nxlua (a server's settings) and beamline:5101 (the
        page's server, on a free port of this machine)."""
        text = re.sub(r"(?<![\w./-])/data/", str(self.shared["data"]) + "/", text)
        text = re.sub(r"(?<![\w./-])/etc/nxlua/", str(self.dir / "etc/nxlua") + "/", text)
        text = re.sub(r"(?<![\w./-])/etc/nxlua(?![\w/])", str(self.dir / "etc/nxlua"), text)
        if self.port:
            text = text.replace("beamline:5101", f"127.0.0.1:{self.port}")
        return text

    def normal(self, text):
        """Process output with what legitimately varies made as the doc shows it."""
        text = text.replace("\r\n", "\n")
        text = text.replace(str(self.shared["data"]), "/data").replace(str(self.home), "/root")
        text = text.replace(str(self.dir / "etc/nxlua"), "/etc/nxlua")
        text = text.replace(str(self.dir) + "/", "").replace(str(self.dir), ".")
        if self.port:
            text = re.sub(rf"\b{self.port}\b", "5101", text)
        return text

    def start_server(self, block, command):
        """`nxlua serve DIR ...` from a page: it runs until stopped, so it runs in the
        background (on a free port of 127.0.0.1, for the page's beamline:5101) until the
        page starts another server or ends. Returns the line it prints once listening."""
        self.stop_server()
        command = re.sub(r"\s+#.*$", "", command)
        log = open(self.dir / "serve.log", "a")
        self.server = subprocess.Popen(["bash", "-c", f"exec {self.code(command)} --port 0 --host 127.0.0.1"],
                                       cwd=self.dir, env=self.env, stdout=subprocess.PIPE, stderr=log, text=True)
        log.close()
        self.background.append(self.server)
        line = [""]
        reader = threading.Thread(target=lambda: line.__setitem__(0, self.server.stdout.readline()), daemon=True)
        reader.start()
        reader.join(60 * SLOW)
        m = re.search(r"listening on port (\d+)", line[0])
        if not m:
            self.fail(block, f"the server did not start: {line[0]!r}\n" + (self.dir / "serve.log").read_text())
            self.stop_server()
            return ""
        self.port = int(m.group(1))
        return line[0]

    def stop_server(self):
        """SIGTERM: the server drains and exits 0, with nothing a sanitizer reports."""
        if self.server is None:
            return
        if self.server.poll() is None:
            self.server.send_signal(signal.SIGTERM)
            try:
                self.server.wait(60 * SLOW)
            except subprocess.TimeoutExpired:
                self.server.kill()
                self.server.wait()
        log = (self.dir / "serve.log").read_text()
        if self.server.returncode != 0 or "Sanitizer" in log:
            self.failures.append(f"{self.page}: the server ended with status {self.server.returncode}:\n{log[-4000:]}")
        self.server = None

    def fail(self, block, message):
        self.failures.append(f"{block.where}: {message}")


def normal_lines(text):
    out = []
    for line in text.split("\n"):
        if VERSION_LINE.match(line):
            line = re.sub(r"\d+(\.\d+)+", "N.N", line)
        out.append(TIMING.sub("<time>", line))
    return out


def compare(page, block, expected, actual_text, what="output"):
    e = strip_blank_ends(normal_lines("\n".join(expected)))
    a = strip_blank_ends(normal_lines(page.normal(actual_text)))
    if not lines_match(e, a):
        page.fail(block, f"the {what} differs from the page\n" + show(e, a))


# ---------------------------------------------------------------- Lua blocks

DRIVER = r"""
-- Runs a page's Lua stretch; records what each line of the page prints.
local chunk_path, chunkname, record_path = ...
local record = assert(io.open(record_path, "w"))
local real_print = print
local function site()
  for level = 3, 60 do
    local info = debug.getinfo(level, "Sl")
    if not info then return 0 end
    if info.source == chunkname then return info.currentline end
  end
  return 0
end
function print(...)
  local parts = {}
  for i = 1, select("#", ...) do parts[i] = tostring((select(i, ...))) end
  local text = table.concat(parts, "\t")
  record:write(site(), " ", #text, "\n", text, "\n")
  record:flush()
  real_print(...)
end
local f = assert(io.open(chunk_path, "rb"))
local source = f:read("a")
f:close()
local fn, err = load(source, chunkname)
if not fn then io.stderr:write(err, "\n"); os.exit(4) end
local ok, e = xpcall(fn, debug.traceback)
if not ok then io.stderr:write(tostring(e), "\n"); os.exit(3) end
"""


def expectations(block):
    """{page line: [expected lines]} from the block's `-->` comments."""
    out, last = {}, None
    for k, line in enumerate(block.lines):
        n = block.line + k
        pos = comment_start(line)
        if pos is None:
            if line.strip():
                last = n
            continue
        code, comment = line[:pos], line[pos:]
        if code.strip():
            last = n
        if comment.startswith("-->"):
            text = comment[3:]
            text = text[1:] if text.startswith(" ") else text
            if last is None:
                raise AssertionError(f"{block.page}:{n}: '-->' before any statement")
            out.setdefault(last, []).append(text)
    return out


def comment_start(line):
    """Where a Lua `--` comment starts on the line (outside strings), or None."""
    i, quote = 0, None
    while i < len(line):
        c = line[i]
        if quote:
            if c == "\\":
                i += 2
                continue
            if c == quote:
                quote = None
        elif c in "\"'":
            quote = c
        elif line.startswith("[[", i):
            end = line.find("]]", i + 2)
            if end < 0:
                return None
            i = end + 2
            continue
        elif line.startswith("--", i):
            return i
        i += 1
    return None


def read_records(path):
    """{page line: [printed lines]} and every printed line in order."""
    records, ordered = {}, []
    if not path.exists():
        return records, ordered
    data = path.read_bytes()
    i = 0
    while i < len(data):
        nl = data.index(b"\n", i)
        line, size = map(int, data[i:nl].split())
        text = data[nl + 1:nl + 1 + size].decode("utf-8", "replace")
        records.setdefault(line, []).extend(text.split("\n"))
        ordered.append((line, text))
        i = nl + 1 + size + 1
    return records, ordered


def run_lua(page, blocks, n):
    total = max(b.line + len(b.lines) for b in blocks)
    source = [""] * total
    expected = {}
    for b in blocks:
        for k, line in enumerate(b.lines):
            source[b.line + k - 1] = page.code(line)
        expected.update(expectations(b))
    chunk = page.dir / f".doc-test-{n}.lua"
    chunk.write_text("\n".join(source) + "\n")
    driver = page.dir / ".doc-test-driver.lua"
    driver.write_text(DRIVER)
    records = page.dir / f".doc-test-{n}.out"
    try:
        r = subprocess.run([BIN, str(driver), str(chunk), "@" + page.page, str(records)], cwd=page.dir,
                           env=page.env, capture_output=True, text=True, timeout=120 * SLOW)
    except subprocess.TimeoutExpired as e:
        page.fail(blocks[0], f"the Lua did not finish within {e.timeout} s")
        return None
    printed, ordered = read_records(records)
    error_line = None
    if r.returncode == 4:
        page.fail(blocks[0], f"the Lua does not compile:\n{r.stderr.rstrip()}")
        return r
    if r.returncode != 0:
        m = re.search(re.escape(page.page) + r":(\d+):", r.stderr)
        error_line = int(m.group(1)) if m else 0   # 0: before the page's code ran
        where = next((b for b in blocks if error_line and b.line <= error_line < b.line + len(b.lines)), blocks[0])
        page.fail(where, f"the Lua failed (status {r.returncode}):\n{r.stderr.rstrip()}")
    for line, want in sorted(expected.items()):
        block = next(b for b in blocks if b.line <= line < b.line + len(b.lines))
        if error_line is not None and line >= error_line and line not in printed:
            continue  # not reached: the failure above says why
        got = printed.get(line, [])
        if not lines_match([w.rstrip() for w in want], [g.rstrip() for g in got]):
            page.failures.append(f"{page.page}:{line}: the line prints something else\n" + show(want, got))
    for b in blocks:
        if b.output is not None and (error_line is None or error_line >= b.line + len(b.lines)):
            got = "\n".join(text for line, text in ordered if b.line <= line < b.line + len(b.lines))
            want = strip_blank_ends(b.output.lines)
            if not lines_match(want, strip_blank_ends(got.split("\n"))):
                page.fail(b, "the block prints something else than the output shown after it\n"
                          + show(want, got.split("\n")))
    return r


def write_files(page, blocks):
    for b in blocks:
        if b.kind != "file":
            continue
        path = page.dir / b.file_name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(b.text)
        r = subprocess.run([BIN, "-e", f"assert(loadfile([[{path}]]))"], cwd=page.dir, env=page.env,
                           capture_output=True, text=True, timeout=60 * SLOW)
        if r.returncode != 0:
            page.fail(b, f"{b.file_name} does not compile:\n{r.stderr}")


# ---------------------------------------------------------------- shell, Python

def run_process(page, block, argv):
    try:
        return subprocess.run(argv, cwd=page.dir, env=page.env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True, timeout=120 * SLOW)
    except subprocess.TimeoutExpired as e:
        page.fail(block, f"did not finish within {e.timeout} s")
        return None


SERVE = re.compile(r"^\s*nxlua serve (?!adduser)")


def run_sh(page, block):
    """The block's commands with bash; a `nxlua serve` line starts the page's server."""
    output, chunk = "", []

    def run_chunk():
        nonlocal output
        if not any(l.strip() for l in chunk):
            return True
        r = run_process(page, block, ["bash", "-c", "set -eo pipefail\n" + page.code("\n".join(chunk))])
        chunk.clear()
        if r is None:
            return False
        output += r.stdout
        if r.returncode != 0:
            page.fail(block, f"the commands failed (status {r.returncode}):\n{r.stdout}")
            return False
        return True

    for line in block.lines:
        if SERVE.match(line):
            if not run_chunk():
                return
            output += page.start_server(block, line)
        else:
            chunk.append(line)
    if not run_chunk():
        return
    if block.output is not None:
        compare(page, block, block.output.lines, output)


def run_python(page, block):
    r = run_process(page, block, [sys.executable, "-c", page.code(block.text)])
    if r is None:
        return
    if r.returncode != 0:
        page.fail(block, f"the Python failed (status {r.returncode}):\n{r.stdout}")
    if block.output is not None:
        compare(page, block, block.output.lines, r.stdout)


# ---------------------------------------------------------------- transcripts

PROMPT = re.compile(r"^(>>?) ")


def transcript_steps(block):
    """[(kind, text, expected lines)]: kind '$' (a command) or '>' / '>>' (REPL input)."""
    steps, in_repl = [], False
    for k, line in enumerate(block.lines):
        m = PROMPT.match(line)
        if line.startswith("$ "):
            steps.append(["$", line[2:], [], block.line + k])
            in_repl = line[2:] in REPL_COMMANDS
        elif m and (in_repl or not steps):
            steps.append([m.group(1), line[m.end():], [], block.line + k])
            in_repl = True
        elif not steps:
            raise AssertionError(f"{block.where}: a transcript starts with '$ ' or '> '")
        else:
            steps[-1][2].append(line)
    return steps


def repl_argv(command, page):
    """The process a transcript's REPL command starts."""
    if command == "scripts/nxlua":
        # as scripts/nxlua does it once built: its own exec line, with the demo scan
        exec_line = next(l for l in (ROOT / "scripts/nxlua").read_text().split("\n") if l.startswith('exec "$bin" -e'))
        demo = page.home / ".cache/nxlua/demo/scan.nxs"
        return ["bash", "-c", f'bin={BIN}; demo={demo}; {exec_line}']
    return [BIN]


REPL_COMMANDS = ("scripts/nxlua", "nxlua")


def run_transcript(page, block):
    steps = transcript_steps(block)
    session = None
    try:
        for i, (kind, text, expected, line) in enumerate(steps):
            here = dataclasses.replace(block, line=line)
            if kind == "$" and text in REPL_COMMANDS:
                session = pexpect.spawn(repl_argv(text, page)[0], repl_argv(text, page)[1:], cwd=str(ROOT),
                                        env=page.repl_env, encoding="utf-8", timeout=20 * SLOW, dimensions=(50, 200))
                session.expect(r"\r\n> ")
                compare(page, here, expected, session.before, f"banner of '{text}'")
            elif kind == "$":
                r = run_process(page, here, ["bash", "-c", page.code(text)])
                if r is not None:
                    compare(page, here, expected, r.stdout, f"output of '{text}'")
            else:
                if session is None:
                    session = pexpect.spawn(BIN, [], cwd=str(page.dir), env=page.repl_env, encoding="utf-8",
                                            timeout=20 * SLOW, dimensions=(50, 200))
                    session.expect(r"\r\n> ")
                session.send(text.replace("<TAB>", "\t") + "\r")
                if expected and expected[0].startswith("^C"):
                    session.expect("\r\n")    # the line is taken: Ctrl-C once it runs
                    time.sleep(0.5 * SLOW)
                    session.sendintr()
                following = steps[i + 1][0] if i + 1 < len(steps) else ">"
                session.expect([r"\r\n> ", r"\r\n>> "])
                got = session.after.strip()
                if expected and expected[0].startswith("^C"):
                    out = session.before
                else:
                    out = session.before.split("\r\n", 1)
                    out = out[1] if len(out) > 1 else ""
                compare(page, here, expected, out, f"output of '{text}'")
                if following in (">", ">>") and got != following:
                    page.fail(here, f"after '{text}' the prompt is '{got}', the page shows '{following}'")
    except (pexpect.TIMEOUT, pexpect.EOF) as e:
        page.fail(block, f"the session stopped answering: {type(e).__name__}\n{session.before if session else ''}")
    finally:
        if session is not None and session.isalive():
            time.sleep(0.2)
            session.sendeof()
            try:
                session.expect(pexpect.EOF, timeout=10 * SLOW)
                session.close()
                if session.exitstatus != 0:
                    page.fail(block, f"the REPL exited with status {session.exitstatus} after Ctrl-D:\n{session.before}")
            except pexpect.TIMEOUT:
                session.terminate(force=True)
                page.fail(block, "the REPL did not end on Ctrl-D")


# ---------------------------------------------------------------- the tests

def all_blocks():
    return [b for page in PAGES for b in read_blocks(page)]


def test_every_block_is_understood():
    """A block the test cannot run must say why (a skip directive) or be `text`."""
    unknown = [f"{b.where} ({b.lang or 'untagged'})" for b in all_blocks() if b.kind == "unknown"]
    assert not unknown, ("blocks that are neither runnable nor marked: tag them (lua, sh, python, text) "
                         "or put <!-- doc-test: skip (reason) --> before them:\n  " + "\n  ".join(unknown))
    for b in all_blocks():
        assert b.directive is None or b.directive[0] in ("skip", "file"), f"{b.where}: unknown directive {b.directive}"
        if b.kind == "skip":
            assert re.fullmatch(r"\(.{8,}\)", b.directive[1]), f"{b.where}: a skip needs a reason in parentheses"


@pytest.mark.parametrize("where", [b.where for b in all_blocks() if b.kind == "skip"])
def test_skipped_block(where):
    block = next(b for b in all_blocks() if b.where == where)
    pytest.skip(f"{where}: {block.directive[1][1:-1]}")


@pytest.mark.parametrize("page", PAGES)
def test_page(page, shared, tmp_path):
    blocks = read_blocks(page)
    p = Page(page, tmp_path, shared)
    if page in PAGE_SETUP:
        PAGE_SETUP[page](p)
    write_files(p, blocks)
    stretch = []

    def flush():
        if stretch:
            run_lua(p, stretch, blocks.index(stretch[0]))
            stretch.clear()

    try:
        run_macro_files(p, blocks)
        for b in blocks:
            kind = b.kind
            if kind == "lua":
                stretch.append(b)
                continue
            if kind in ("sh", "python", "transcript"):
                flush()
            if kind == "sh":
                run_sh(p, b)
            elif kind == "python":
                run_python(p, b)
            elif kind == "transcript":
                run_transcript(p, b)
        flush()
    finally:
        p.stop_server()
        for proc in p.background:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    if p.failures:
        pytest.fail(f"{page}: {len(p.failures)} example(s) differ from nxlua:\n\n" + "\n\n".join(p.failures),
                    pytrace=False)


def run_macro_files(page, blocks):
    """The page's macros (files under macros/) under `nxlua macros`, on the events of a
    replayed stack (scan42.nxs, from the page's setup) and on a run that `nxlua trigger`
    starts and stops, as a control system sends it (no file, no frames): every handler
    must succeed. The journal is the page's beamline.sqlite, which later blocks query."""
    macros = [b for b in blocks if b.kind == "file" and b.file_name.startswith("macros/")]
    if not macros:
        return
    journal = page.dir / "beamline.sqlite"
    log = open(page.dir / "macros.log", "w")
    runner = subprocess.Popen([BIN, "macros", "macros", "--journal", journal, "--from-start", "--poll", "0.01",
                               "--reload-interval", "0.1"], cwd=page.dir, env=page.env, stdout=log,
                              stderr=subprocess.STDOUT)
    page.background.append(runner)
    try:
        commands = [["replay", "scan42.nxs", "--journal", journal, "--chunk", "4"],
                    ["trigger", "run.start", "--journal", journal, "plan=ascan"]]
        for c in commands:
            r = subprocess.run([BIN, *map(str, c)], cwd=page.dir, env=page.env, capture_output=True, text=True,
                               timeout=60 * SLOW)
            assert r.returncode == 0, f"nxlua {' '.join(map(str, c))}: {r.stderr}"
        uid = r.stdout.split()[1]
        r = subprocess.run([BIN, "trigger", "run.stop", "--journal", journal, "--run", uid, "status=success"],
                           cwd=page.dir, env=page.env, capture_output=True, text=True, timeout=60 * SLOW)
        assert r.returncode == 0, r.stderr
        names = [pathlib.Path(b.file_name).stem for b in macros]
        deadline = time.monotonic() + 60 * SLOW
        while True:
            with sqlite3.connect(f"file:{journal}?mode=ro", uri=True, timeout=30) as c:
                last = c.execute("SELECT MAX(seq) FROM events").fetchone()[0]
                cursors = dict(c.execute("SELECT macro, seq FROM cursors").fetchall())
            if all(cursors.get(n) == last for n in names):
                break
            if runner.poll() is not None or time.monotonic() > deadline:
                page.fail(macros[0], f"the macros did not handle the {last} events (cursors {cursors}):\n"
                          + (page.dir / "macros.log").read_text())
                return
            time.sleep(0.05)
    finally:
        if runner.poll() is None:
            runner.send_signal(signal.SIGTERM)
            runner.wait(timeout=60 * SLOW)
        log.close()
    with sqlite3.connect(f"file:{journal}?mode=ro", uri=True) as c:
        failed = c.execute("SELECT r.macro, e.kind, r.error FROM records r JOIN events e ON e.seq = r.seq "
                           "WHERE r.status != 'done' AND r.status != 'skipped'").fetchall()
    for macro, kind, error in failed:
        block = next(b for b in macros if pathlib.Path(b.file_name).stem == macro)
        page.fail(block, f"macro {macro} failed on {kind}: {error}")


def file_block(page, name):
    """The text of a file a page asks its reader to save."""
    return next(b.text for b in read_blocks(page) if b.file_name == name)


def setup_readme(p):
    # the tour's commands: the reduce.lua of docs/scripts.md, a file to give it, a module
    (p.dir / "reduce.lua").write_text(file_block("docs/scripts.md", "reduce.lua"))
    shutil.copy(p.shared["demo"], p.dir / "sample_300K.nxs")
    (p.dir / "mymacros.lua").write_text("return {greeting = 'hello from mymacros'}\n")


def setup_macros(p):
    # scan42.nxs: a stack of the frames in /data/scan7, as `nxlua stack` writes it
    r = subprocess.run([BIN, "stack", *sorted(map(str, (p.shared["data"] / "scan7").glob("*.cbf"))), "--out",
                        "scan42.nxs", "--quiet"], cwd=p.dir, env=p.env, capture_output=True, text=True,
                       timeout=120 * SLOW)
    assert r.returncode == 0, r.stderr


def setup_remote(p):
    # the TLS example's certificate and key (self-signed, so the client is told not to
    # check it, as the page says); the password for nx.remote, the way the page gives it
    r = subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj",
                        "/CN=beamline", "-keyout", "server.key", "-out", "server.crt"], cwd=p.dir,
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    p.env.update(H5PYD_VERIFY_CERT="False", NXLUA_PASSWORD="s3cret")


# What a page's examples expect to find besides scan.nxs, scripts/ and /data.
PAGE_SETUP = {"README.md": setup_readme, "docs/macros.md": setup_macros, "docs/remote.md": setup_remote,
              "docs/crystal.md": setup_macros}
