"""E2B's documented flows, run by the pinned `e2b` SDK against berth (tests/api/e2b.rs starts it).

Each step asserts what the SDK hands back; the script prints `ok` at the end. Environment:
E2B_API_KEY (a berth API token), E2B_API_URL and E2B_SANDBOX_URL (berth's /e2b).
"""
import sys
import time

from e2b import CommandExitException, PtySize, Sandbox, SandboxQuery


def step(name):
    print(f"-- {name}", flush=True)


step("create")
sbx = Sandbox.create(template="base", timeout=120, metadata={"suite": "berth"}, envs={"GREETING": "hi"})

step("run")
r = sbx.commands.run("echo $GREETING; echo err >&2")
assert (r.stdout, r.stderr, r.exit_code) == ("hi\n", "err\n", 0), r

step("run, streaming")
seen = []
r = sbx.commands.run("for i in 1 2 3; do echo l$i; sleep 0.2; done", on_stdout=seen.append)
assert "".join(seen) == "l1\nl2\nl3\n", seen

step("run, failing")
try:
    sbx.commands.run("echo no >&2; exit 3")
    sys.exit("a failing command raised nothing")
except CommandExitException as e:
    assert e.exit_code == 3 and e.stderr == "no\n", e

step("run, cwd and envs")
r = sbx.commands.run("pwd; echo $X", cwd="/tmp", envs={"X": "y"})
assert r.stdout == "/tmp\ny\n", r

step("background, connect, list, kill")
h = sbx.commands.run("sleep 1; echo later", background=True)
again = sbx.commands.connect(h.pid)
assert again.wait().stdout == "later\n"
h = sbx.commands.run("sleep 100", background=True)
assert any(p.pid == h.pid for p in sbx.commands.list())
assert sbx.commands.kill(h.pid)
assert not any(p.pid == h.pid for p in sbx.commands.list())

step("stdin")
h = sbx.commands.run("head -n1", background=True, stdin=True)
sbx.commands.send_stdin(h.pid, "typed\n")
assert h.wait().stdout == "typed\n"

step("files")
sbx.files.write("/home/user/hello.txt", "hello file")
assert sbx.files.read("/home/user/hello.txt") == "hello file"
blob = bytes(range(256)) * 4000
sbx.files.write("/home/user/blob.bin", blob)
assert bytes(sbx.files.read("/home/user/blob.bin", format="bytes")) == blob
sbx.files.write_files([{"path": "/home/user/a.txt", "data": "A"}, {"path": "/home/user/b.txt", "data": "B"}])
names = {e.name for e in sbx.files.list("/home/user")}
assert {"hello.txt", "blob.bin", "a.txt", "b.txt"} <= names, names
assert sbx.files.exists("/home/user/a.txt") and not sbx.files.exists("/home/user/nope")
info = sbx.files.get_info("/home/user/blob.bin")
assert info.size == len(blob), info
sbx.files.rename("/home/user/a.txt", "/home/user/c.txt")
assert sbx.files.read("/home/user/c.txt") == "A"
sbx.files.remove("/home/user/b.txt")
assert not sbx.files.exists("/home/user/b.txt")
assert sbx.files.make_dir("/home/user/dir") and not sbx.files.make_dir("/home/user/dir")

step("watch")
w = sbx.files.watch_dir("/home/user/dir")
sbx.files.write("/home/user/dir/new.txt", "x")
events = []
for _ in range(50):
    events += w.get_new_events()
    if any(e.name == "new.txt" for e in events):
        break
    time.sleep(0.1)
w.stop()
assert any(e.name == "new.txt" for e in events), events

step("pty")
out = []
t = sbx.pty.create(PtySize(rows=24, cols=80))
sbx.pty.resize(t.pid, PtySize(rows=30, cols=100))
sbx.pty.send_stdin(t.pid, b"echo pty-$((6*7)) $(stty size)\nexit\n")
t.wait(on_pty=out.append)
assert b"pty-42 30 100" in b"".join(out), out

step("list, info, timeout")
listed = Sandbox.list(query=SandboxQuery(metadata={"suite": "berth"})).next_items()
assert [s.sandbox_id for s in listed] == [sbx.sandbox_id], listed
sbx.set_timeout(90)
info = sbx.get_info()
assert info.metadata == {"suite": "berth"} and info.state.value == "running", info

step("metrics")
# A busy CPU and a file of 64 MiB, measured by the engine.
sbx.commands.run("head -c 67108864 /dev/urandom > /home/user/blob; timeout 2 sh -c 'while :; do :; done'; true")
m = sbx.get_metrics()
assert len(m) == 1, m
m = m[0]
assert m.cpu_count >= 1 and 0 <= m.cpu_used_pct <= 100, m
assert 0 < m.mem_used < m.mem_total, m
assert m.disk_used >= 64 << 20 and m.disk_total > m.disk_used, m

step("snapshot, a sandbox from it, fork")
sbx.files.write("/home/user/snap.txt", "in the snapshot")
sbx.commands.run("echo kept > /workspace/ws.txt")
snap = sbx.create_snapshot(name="suite-snap")
assert snap.names == ["suite-snap"], snap
listed = Sandbox.list_snapshots(sandbox_id=sbx.sandbox_id).next_items()
assert [s.snapshot_id for s in listed] == [snap.snapshot_id], listed
assert [s.snapshot_id for s in Sandbox.list_snapshots(name="suite-snap").next_items()] == [snap.snapshot_id]
child = Sandbox.create(snap.snapshot_id, timeout=60)
assert child.files.read("/home/user/snap.txt") == "in the snapshot"
assert child.commands.run("cat /workspace/ws.txt").stdout == "kept\n"
# What changes after the snapshot is not in it.
sbx.files.write("/home/user/later.txt", "later")
assert not child.files.exists("/home/user/later.txt")
forks = sbx.fork(count=2)
assert len(forks) == 2 and all(isinstance(f, Sandbox) for f in forks), forks
for f in forks:
    assert f.sandbox_id not in (sbx.sandbox_id, child.sandbox_id)
    assert f.files.read("/home/user/later.txt") == "later"
    assert f.commands.run("cat /workspace/ws.txt").stdout == "kept\n"
    assert f.kill()
assert child.kill()
assert Sandbox.delete_snapshot(snap.snapshot_id)
assert not Sandbox.delete_snapshot(snap.snapshot_id)
assert Sandbox.list_snapshots().next_items() == []

step("pause, resume keeps files")
assert sbx.pause()
assert Sandbox.get_info(sbx.sandbox_id).state.value == "paused"
back = Sandbox.connect(sbx.sandbox_id)
assert back.files.read("/home/user/hello.txt") == "hello file"
assert back.commands.run("cat /home/user/c.txt").stdout == "A"

step("kill")
assert back.kill()
assert not Sandbox.kill(sbx.sandbox_id)

step("timeout expiry")
short = Sandbox.create(timeout=2)
for _ in range(60):
    if short.sandbox_id not in [s.sandbox_id for s in Sandbox.list().next_items()]:
        break
    time.sleep(0.5)
else:
    sys.exit("a sandbox outlived its timeout")

print("ok")
