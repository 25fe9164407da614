"""The journal beyond one machine (docs/macros.md): PostgreSQL as the journal, several
`nxlua macros` runners sharing its macros through leases (SIGKILL moves a runner's macros),
sources appending concurrently without gaps, pruning on both engines, one-shot replays.
Real processes and a real PostgreSQL cluster on loopback; every wait is bounded."""
import json
import random
import subprocess
import threading
import time

import pytest

from postgres_support import create_database
from test_macros import (BIN, LOGGER, Runner, db, feed, last_seq, log_lines, records, run, stack_live, trigger,
                         wait_caught_up, wait_for)


def cursors(journal):
    with db(journal) as c:
        return dict(c.execute("SELECT macro, seq FROM cursors").fetchall())


def test_three_runners_share_the_macros_and_take_over_after_sigkill(tmp_path, postgres):
    journal = create_database(postgres)
    folder = tmp_path / "macros"
    folder.mkdir()
    names = [f"m{i}" for i in range(6)]
    logs = {m: tmp_path / f"{m}.log" for m in names}
    for m in names:
        (folder / f"{m}.lua").write_text(LOGGER.format(tag=m, log=logs[m], pause=0.02))
    _, uid = trigger(journal, "run.start")
    # NOTIFY wakes these runners (no fast poll); leases of 2 s
    runners = [Runner(folder, journal, "--lease", "2", poll=()) for _ in range(3)]
    stackers = []
    try:
        # every macro has started (at the open run's start) before the other sources begin
        wait_for(lambda: len(cursors(journal)) == len(names), timeout=60, what="the macros to start")
        # two stackers and a trigger source append at the same time
        for k in range(2):
            (tmp_path / f"s{k}").mkdir()
            stackers.append(stack_live(tmp_path / f"s{k}", journal, 16, name=f"scan{k}"))
        feeders = [threading.Thread(target=feed, args=(p, made, watched)) for p, made, watched, _ in stackers]
        for t in feeders:
            t.start()
        rng = random.Random(11)
        for i in range(24):
            trigger(journal, "point", "--run", uid, f"i={i}")
            if i in (8, 16):
                # SIGKILL of a runner at a random moment; it comes back (a new process)
                victim = rng.choice(runners)
                time.sleep(rng.uniform(0, 0.1))
                victim.kill()
                victim.start()
        for t in feeders:
            t.join(timeout=120)
        for p, *_ in stackers:
            p.communicate(timeout=120)
            assert p.returncode == 0
        wait_caught_up(journal, names, timeout=120)
        # every macro ran, spread over the runners
        with db(journal) as c:
            placed = dict(c.execute("SELECT macro, owner FROM leases").fetchall())
        assert sorted(placed) == names, placed
        assert len(set(placed.values())) >= 2, placed
        # one runner dies for good: its macros move to the others within the lease time
        doomed = placed[names[0]]
        victim = next(r for r in runners if f":{r.p.pid}:" in doomed)
        moving = [m for m, o in placed.items() if o == doomed]
        victim.kill()
        runners.remove(victim)
        trigger(journal, "point", "--run", uid, "after=kill")
        trigger(journal, "run.stop", "--run", uid)
        wait_caught_up(journal, names, timeout=60)
        with db(journal) as c:
            placed = dict(c.execute("SELECT macro, owner FROM leases").fetchall())
        assert all(placed[m] != doomed for m in moving), placed
    finally:
        for p, *_ in stackers:
            p.kill()
        texts = [r.stop() for r in runners]
    with db(journal) as c:
        seqs = [s for (s,) in c.execute("SELECT seq FROM events ORDER BY seq").fetchall()]
        handled = {s for (s,) in c.execute("SELECT seq FROM events WHERE kind IN ('run.start','frames.ready','point','run.stop')")
                   .fetchall()}
    # concurrent appenders: no gap, no duplicate
    assert seqs == list(range(1, len(seqs) + 1))
    for m in names:
        recs = records(journal, m)
        assert set(recs) == set(seqs), m              # nothing lost: every event has a record
        assert all(recs[s][0] == "done" for s in handled), m
        seen = {}
        for line in log_lines(logs[m]):
            seen[int(line[0])] = seen.get(int(line[0]), 0) + 1
        assert set(seen) == handled, m
        for s, count in seen.items():
            # twice only where a runner was killed mid-handler, and the records say so
            assert count <= recs[s][2], (m, s, count, recs[s], texts)


def test_pruning_never_removes_an_event_a_macro_has_not_passed(tmp_path, journal):
    folder = tmp_path / "macros"
    folder.mkdir()
    log = tmp_path / "log.txt"
    (folder / "fast.lua").write_text(LOGGER.format(tag="fast", log=log, pause=0))
    # stuck: fails on the 5th point, disabled there (its cursor stays behind)
    (folder / "stuck.lua").write_text('on("point", "p", function(e) if e.i == 5 then error("stuck at 5") end end)\n')
    _, uid = trigger(journal, "run.start")
    for i in range(12):
        trigger(journal, "point", "--run", uid, f"i={i}")
    trigger(journal, "run.stop", "--run", uid)
    _, uid2 = trigger(journal, "run.start")
    trigger(journal, "point", "--run", uid2, "i=100")
    r = run("macros", folder, "--journal", journal, "--from-start", "--until-idle", "--max-failures", "1", timeout=120)
    assert r.returncode == 0, r.stderr
    marks = cursors(journal)
    last = last_seq(journal)
    assert marks["fast"] == last and marks["stuck"] < last, marks
    with db(journal) as c:
        before = dict(c.execute("SELECT seq, kind FROM events").fetchall())
    # too young: nothing goes
    r = run("journal", "prune", "--keep", "1d", "--journal", journal)
    assert r.returncode == 0 and "removed 0 events" in r.stdout, r.stdout + r.stderr
    time.sleep(1.1)
    r = run("journal", "prune", "--keep", "1s", "--journal", journal)
    assert r.returncode == 0, r.stderr
    with db(journal) as c:
        after = dict(c.execute("SELECT seq, kind FROM events").fetchall())
    gone = set(before) - set(after)
    assert gone, "something old enough and passed by every macro should go"
    # only events every macro had passed, never a run.start / run.stop
    assert all(s <= marks["stuck"] for s in gone) and all(before[s] not in ("run.start", "run.stop") for s in gone)
    assert all(s in after for s in before if s > marks["stuck"])
    assert f"removed {len(gone)} events" in r.stdout
    status = run("macros", "status", "--journal", journal)
    assert status.returncode == 0 and f"{len(after)} kept" in status.stdout and "oldest" in status.stdout, status.stdout
    # the stuck macro, fixed, still gets every event it had not passed
    (folder / "stuck.lua").write_text(LOGGER.format(tag="stuck", log=log, pause=0))
    r = run("macros", folder, "--journal", journal, "--until-idle", timeout=120)
    assert r.returncode == 0, r.stderr
    again = [int(l[0]) for l in log_lines(log) if l[4] == "stuck"]
    assert again == [s for s in sorted(after) if s > marks["stuck"] and after[s] in ("point", "run.start", "run.stop")]
    # new events still get new numbers after a prune
    seq, _ = trigger(journal, "point", "--run", uid2, "i=101")
    assert seq == last + 1
    r = run("journal", "prune", "--keep", "soon", "--journal", journal)
    assert r.returncode == 1 and "'soon' is not a duration" in r.stderr


def test_replay_with_macros_runs_them_to_the_end_and_says_how_it_went(tmp_path):
    journal = tmp_path / "live.sqlite"
    p, made, watched, out = stack_live(tmp_path, journal, 6)
    feed(p, made, watched)
    folder = tmp_path / "macros"
    folder.mkdir()
    log = tmp_path / "log.txt"
    (folder / "count.lua").write_text(LOGGER.format(tag="c", log=log, pause=0))
    r = run("replay", out, out, "--macros", folder, "--chunk", "2", timeout=120)
    assert r.returncode == 0, r.stderr
    lines = log_lines(log)
    assert [l[1] for l in lines].count("run.start") == 2 and [l[1] for l in lines].count("frames.ready") == 6
    assert len({l[2] for l in lines}) == 2                     # one run per file
    summary = r.stdout.strip().splitlines()[-1]
    assert f"{len(lines)} done, 0 failed" in summary, summary
    # a failing handler: non-zero status, counted
    (folder / "bad.lua").write_text('on("frames.ready", "x", function(e) error("bad frame " .. e.first) end)\n')
    r = run("replay", out, "--macros", folder, "--chunk", "2", timeout=120)
    assert r.returncode == 1 and "3 failed" in r.stdout and "bad frame" in r.stderr, r.stdout + r.stderr
    r = run("replay", out, "--macros", tmp_path / "nowhere")
    assert r.returncode == 1 and "not a folder of macros" in r.stderr


def test_bad_postgres_urls_get_clear_errors_without_the_password(tmp_path, postgres):
    port = postgres.rsplit(":", 1)[1]
    closed = subprocess.run(["python3", "-c", "import socket; s=socket.socket(); s.bind(('127.0.0.1',0)); print(s.getsockname()[1])"],
                            capture_output=True, text=True).stdout.strip()
    cases = [
        (f"postgres://ray:hunter2@127.0.0.1:{closed}/db", "cannot connect"),
        (f"postgres://nobody:hunter2@127.0.0.1:{port}/postgres", "nobody"),
        (f"postgres://postgres:hunter2@127.0.0.1:{port}/no_such_db", "no_such_db"),
        ("postgres://ray:hunter2@127.0.0.1:notaport/db", "not a port number"),
    ]
    for url, words in cases:
        for args in (["trigger", "run.start", "--journal", url], ["macros", "status", "--journal", url],
                     ["journal", "prune", "--keep", "1d", "--journal", url]):
            r = run(*args, timeout=60)
            assert r.returncode == 1 and words in r.stderr, (args, r.stderr)
            assert "hunter2" not in r.stderr + r.stdout
    # NXLUA_JOURNAL names the journal too
    good = create_database(postgres)
    r = subprocess.run([BIN, "trigger", "run.start"], capture_output=True, text=True, timeout=60,
                       env={"NXLUA_JOURNAL": good, "PATH": "/usr/bin:/bin"})
    assert r.returncode == 0, r.stderr
    assert last_seq(good) == 1


def test_macros_status_shows_the_journal_size_and_oldest_event(tmp_path, journal):
    _, uid = trigger(journal, "run.start")
    trigger(journal, "point", "--run", uid, "x=1")
    r = run("macros", "status", "--journal", journal)
    assert r.returncode == 0 and "2 events, 2 kept" in r.stdout and "oldest" in r.stdout and "UTC" in r.stdout, r.stdout
