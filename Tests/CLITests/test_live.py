"""Live operation: a stack keeps being read while its stacker is killed and restarted.
Real processes on loopback only; every wait is bounded."""
import signal
import subprocess
import time

import pytest

from test_macros import wait_for
from test_stack import BIN, check_frames, make_frames, write_then_rename

# Holds the stack open as a SWMR reader for the whole test, as a viewer or a REPL does,
# and reports what it sees: "<stored> <frames in the data>" per poll; the status is
# refreshed before the data (the writer commits data first), so stored <= frames.
HOLDING_READER = """
local path, stop = ...
local f = nx.load(path, "r", {swmr = true})
local status = f.entry.stacking.frame_status
local data = f.entry.instrument.detector.data
while not io.open(stop) do
  status:refresh(); data:refresh()
  local st = status:read()
  local stored = st:eq(1):sum()
  io.write(string.format("%d %d\\n", stored, data.shape[1])); io.flush()
  nxlua.sleep(0.02)
end
"""

# Opens the file anew for every poll, as nxlua serve and macro handlers do.
REOPENING_READER = """
local path, stop = ...
while not io.open(stop) do
  local ok, f = pcall(nx.load, path)
  if ok then
    local st = f.entry.stacking.frame_status:read()
    io.write(string.format("%d\\n", st:eq(1):sum())); io.flush()
    f:close()
  end
  nxlua.sleep(0.02)
end
"""


def test_a_killed_stacker_resumes_at_once_while_readers_keep_reading(tmp_path):
    """HDF5's file lock of every reader refused the restarted writer for 20-23 s in a
    live run; nxlua's SWMR readers take none, so the restart succeeds at once, and a
    second stacker on the same output is refused by the stacker's own lock."""
    count = 30
    made = make_frames(tmp_path / "made", range(1, count + 1))
    watched = tmp_path / "watched"
    watched.mkdir()
    out, stop = tmp_path / "s.nxs", tmp_path / "stop"
    command = [BIN, "stack", "--watch", str(watched), "--out", str(out), "--frames", str(count), "--quiet",
               "--flush-every", "1"]
    for m in made[:count // 2]:
        write_then_rename(m, watched / m.name)
    stacker = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    readers = []
    try:
        wait_for(out.exists, timeout=60, what="the stack to appear")
        for i, code in enumerate([HOLDING_READER, REOPENING_READER]):
            script = tmp_path / f"reader{i}.lua"
            script.write_text(code)
            readers.append(subprocess.Popen([BIN, str(script), str(out), str(stop)], stdout=subprocess.PIPE,
                                            stderr=subprocess.PIPE, text=True))
        # both readers have the file open before the kill
        time.sleep(0.5)
        assert all(r.poll() is None for r in readers), [r.stderr.read() for r in readers]
        stacker.send_signal(signal.SIGKILL)
        stacker.wait(timeout=30)
        # restarted at once, with the readers still reading
        stacker = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        time.sleep(0.3)
        second = subprocess.run(command, capture_output=True, text=True, timeout=60)
        assert second.returncode == 1 and "another nxlua stack is writing this file" in second.stderr, second.stderr
        for m in made[count // 2:]:
            write_then_rename(m, watched / m.name)
        _, err = stacker.communicate(timeout=120)
        assert stacker.returncode == 0, err
        assert "cannot resume" not in err
    finally:
        stop.write_text("")
        if stacker.poll() is None:
            stacker.kill()
            stacker.wait()
        outputs = []
        for r in readers:
            try:
                o, e = r.communicate(timeout=60)
            except subprocess.TimeoutExpired:
                r.kill()
                o, e = r.communicate()
            outputs.append((r.returncode, o, e))
    for code, o, e in outputs:
        assert code == 0, e
    held = [tuple(map(int, line.split())) for line in outputs[0][1].splitlines()]
    assert held and all(stored <= frames for stored, frames in held), held
    assert held[-1][0] == count or max(s for s, _ in held) >= count // 2
    reopened = [int(line) for line in outputs[1][1].splitlines()]
    assert reopened and max(reopened) >= count // 2
    check_frames(out, made)
