"""Notebook cells on a Ray cluster started as users start one: `ray start
--head` and `ray start --address` as separate processes on 127.0.0.1,
kernels (nbclient) coming and going on it, a node killed mid-operation.

A module of its own: `ray stop` ends every Ray process of the machine, so
no other module's cluster may be up meanwhile."""

import collections
import concurrent.futures
import contextlib
import os
import pathlib
import signal
import socket
import subprocess
import sys
import time

import pytest

# Ray keeps to 127.0.0.1 (see test_ray.py); read at import.
os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"
pytest.importorskip("ray", reason="Ray is installed with ./notebook[test]")
from kernels import notebook_client, shown  # noqa: E402

RAY = pathlib.Path(sys.executable).with_name("ray")


def free_port():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class Started:
    """A cluster of `ray start` processes: the head and a worker node, one
    CPU each, each node's `ray start --block` in a process group of its
    own (killing that group takes the node down, as a lost machine)."""

    def __init__(self, log_dir):
        self.port = free_port()
        self.address = f"127.0.0.1:{self.port}"
        self.log_dir = log_dir
        self.head = self._start(
            "head",
            "--head",
            f"--port={self.port}",
            "--include-dashboard=false",
            "--disable-usage-stats",
        )
        self._wait_for_nodes(1)
        self.worker = self._start("worker", f"--address={self.address}")
        self._wait_for_nodes(2)

    def _start(self, name, *args):
        log = open(self.log_dir / f"ray-{name}.log", "wb")  # noqa: SIM115 - the process's
        # As a user's shell has it: `ray start --address` refuses a second
        # node under the `0` the kernels keep to 127.0.0.1 with.
        environment = {**os.environ, "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "1"}
        return subprocess.Popen(
            [RAY, "start", "--block", "--node-ip-address=127.0.0.1", "--num-cpus=1", *args],
            env=environment,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )

    def _driver(self, code, check=False, timeout=60):
        """Runs `code` in a fresh Ray driver connected to the cluster (its
        own process: this one's Ray stays off), for at most `timeout`
        seconds; the finished process."""
        script = (
            "import os, ray\n"
            "os.environ['RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER'] = '0'\n"
            f"ray.init(address={self.address!r}, logging_level='ERROR')\n" + code
        )
        return subprocess.run(
            [sys.executable, "-c", script],
            capture_output=True,
            text=True,
            timeout=timeout,
            check=check,
        )

    def _wait_for_nodes(self, count, timeout=90):
        deadline = time.time() + timeout
        while True:
            alive = self._driver("print(sum(1 for node in ray.nodes() if node['Alive']))\n")
            lines = alive.stdout.split()
            if alive.returncode == 0 and lines and int(lines[-1]) >= count:
                return
            assert time.time() < deadline, f"{count} Ray nodes did not come up: {alive.stderr}"
            time.sleep(1)

    def supervisors(self):
        """The names of the pragma supervisors the cluster has."""
        listed = self._driver(
            "for actor in ray.util.list_named_actors(all_namespaces=True):\n"
            "    if actor['namespace'] == 'pragma':\n"
            "        print(actor['name'])\n",
            check=True,
        )
        return listed.stdout.split()

    def kill_worker_node(self):
        """The worker node goes, as a machine does: every process at once,
        its Ray workers too (they are not all in its process group)."""
        for pid in descendants(self.worker.pid):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        os.killpg(self.worker.pid, signal.SIGKILL)
        self.worker.wait()

    def stop(self):
        for node in (self.worker, self.head):
            if node.poll() is None:
                os.killpg(node.pid, signal.SIGTERM)
        subprocess.run([RAY, "stop", "--force"], capture_output=True, timeout=120)
        for node in (self.worker, self.head):
            try:
                node.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(node.pid, signal.SIGKILL)
                node.wait()


def descendants(pid):
    """The processes under `pid`, read from /proc."""
    children = collections.defaultdict(list)
    for entry in os.listdir("/proc"):
        with contextlib.suppress(OSError, ValueError, IndexError):
            stat = pathlib.Path(f"/proc/{entry}/stat").read_text()
            # After the command's parenthesis: state, then the parent.
            children[int(stat.rsplit(")", 1)[1].split()[1])].append(int(entry))
    found, todo = [], [pid]
    while todo:
        under = children.get(todo.pop(), [])
        found += under
        todo += under
    return found


@pytest.fixture
def started(tmp_path, monkeypatch):
    # Without token authentication, for the nodes, this process and the
    # kernels alike: Ray turns it on for `ray start` by itself once a local
    # `ray.init` (another module's) left a token in ~/.ray, and a driver
    # without the token is then refused.
    monkeypatch.setenv("RAY_AUTH_MODE", "disabled")
    cluster = Started(tmp_path)
    try:
        yield cluster
    finally:
        cluster.stop()


def pids(directory, prefix):
    """The worker processes that left marks `PREFIX-PID-...` in `directory`."""
    return {name.split("-")[1] for name in os.listdir(directory) if name.startswith(prefix + "-")}


def test_a_second_kernel_runs_its_iterations_in_its_own_warm_workers(tmp_path, started):
    marks = tmp_path / "marks"
    marks.mkdir()
    cell = (
        "#pragma parallel --iterations 8 --parallel-runs 2 --max-by x\n"
        "import os\n"
        "open(os.path.join(where, f'{tag}-{os.getpid()}-{iteration}'), 'w').close()\n"
        "x = iteration"
    )
    plain = (
        "@ray.remote(num_cpus=1)\n"
        "def mark(i):\n"
        "    import os\n"
        "    open(os.path.join(where, f'{tag}-{os.getpid()}-{i}'), 'w').close()\n"
        "ray.get([mark.remote(i) for i in range(8)])"
    )
    setup = (
        f"%pragma config backend=ray address={started.address}\nimport ray\nwhere = {str(marks)!r}"
    )
    # A first kernel runs an operation, and goes.
    first = notebook_client(tmp_path, [setup, "tag = 'first'", cell, "%pragma wait"])
    first.execute()
    # A second one alternates operations with Ray tasks of its own, as a
    # notebook does.
    rounds = []
    for round_ in range(4):
        rounds += [f"tag = 'op{round_}'", cell, "%pragma wait", f"tag = 'plain{round_}'", plain]
    second = notebook_client(tmp_path, [setup, *rounds], timeout=240)
    second.execute()
    connected = shown(second.nb.cells[1])
    # The connection is quiet: no Ray INFO lines in the cell.
    assert "Connecting to existing Ray cluster" not in connected, connected

    # Its iterations run in its own job's worker processes, those its own
    # Ray tasks run in, and no operation (nor task) starts a worker of its
    # own: each would be a second's start, paid per operation. The pool
    # may grow to one worker per CPU (two) when Ray sees fit, in whichever
    # round (CI saw the second start in round 2); a start per operation
    # would show four or more.
    def used(rounds):
        return set().union(*(pids(marks, f"{kind}{r}") for kind in ("op", "plain") for r in rounds))

    every = used(range(4))
    assert pids(marks, "op0") & pids(marks, "plain0"), sorted(os.listdir(marks))
    assert len(every) <= 2, sorted(os.listdir(marks))
    # The first kernel's workers are not its.
    assert not pids(marks, "first") & every, sorted(os.listdir(marks))

    # Each kernel had its supervisor; with the kernels gone and nothing
    # held for another, they let themselves go (a minute after the last
    # beat).
    deadline = time.time() + 150
    while started.supervisors():
        assert time.time() < deadline, f"supervisors left: {started.supervisors()}"
        time.sleep(5)


@pytest.mark.parametrize(
    ("iterations", "seconds"),
    # Long iterations, a task each; short ones, several a task.
    [(12, 2), (400, 0.01)],
    ids=["a-task-each", "several-a-task"],
)
def test_a_node_lost_mid_operation_costs_only_the_runs_it_had(
    tmp_path, started, iterations, seconds
):
    marks = tmp_path / "marks"
    marks.mkdir()
    client = notebook_client(
        tmp_path,
        [
            f"%pragma config backend=ray address={started.address}\nwhere = {str(marks)!r}\n"
            "import ray\nhead = ray.get_runtime_context().get_node_id()",
            f"#pragma parallel --iterations {iterations} --parallel-runs 2 --max-by x\n"
            "import os, ray, time\n"
            "node = 'head' if ray.get_runtime_context().get_node_id() == head else 'worker'\n"
            "open(os.path.join(where, f'started-{iteration}-{os.getpid()}-{node}'), 'w').close()\n"
            f"time.sleep({seconds})\n"
            "x = iteration",
            "outcome = %pragma wait\n"
            "print('ended:', outcome.status, outcome.best_iteration)\n"
            "print('usage:', outcome.usage['iterations_run'], outcome.usage['work_lost'])",
        ],
        timeout=240,
    )

    def on_the_worker_node():
        return sum(1 for name in os.listdir(marks) if name.endswith("-worker"))

    def kill_while_it_runs_there():
        deadline = time.time() + 60

        def wait_for(condition):
            while not condition():
                assert time.time() < deadline, "no iteration ran on the worker node"
                time.sleep(0.002)

        # Past its first task there (of one iteration), the moment another
        # iteration starts there: it runs now, within a task of several
        # if they are short.
        wait_for(lambda: on_the_worker_node() >= 2)
        seen = on_the_worker_node()
        wait_for(lambda: on_the_worker_node() > seen)
        started.kill_worker_node()

    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        executed = pool.submit(client.execute)
        kill_while_it_runs_there()
        executed.result(timeout=240)
    said = shown(client.nb.cells[-1]).splitlines()
    assert f"ended: succeeded {iterations - 1}" in said, said
    runs, lost = (
        int(n) for n in next(line for line in said if line.startswith("usage:")).split()[1:]
    )
    # The iteration running on the lost node (one CPU) is lost, and runs
    # again; nothing else counts: the supervisor is on the kernel's node,
    # what the lost task ended before stays, and what it had not started
    # is queued again, uncounted.
    assert lost == 1, said
    assert runs == iterations + 1, said
    started_runs = {name.split("-")[1] for name in os.listdir(marks)}
    assert started_runs == {str(i) for i in range(iterations)}, len(started_runs)


def test_a_supervisor_killed_is_replaced_and_its_iterations_run_again_unpreempted(
    tmp_path, started
):
    marks = tmp_path / "marks"
    marks.mkdir()
    supervisors = (
        "[a['name'] for a in ray.util.list_named_actors(all_namespaces=True)"
        " if a['namespace'] == 'pragma']"
    )
    wait = (
        "outcome = %pragma wait\n"
        "print('ended:', outcome.status, outcome.best_iteration, outcome.failed_iterations)\n"
        "print('usage:', outcome.usage['iterations_run'], outcome.usage['work_lost'])"
    )
    client = notebook_client(
        tmp_path,
        [
            f"%pragma config backend=ray address={started.address}\n"
            f"import ray, time\nwhere = {str(marks)!r}",
            # Short iterations, so that each task runs several; iteration
            # 200 is slow, so that its task runs when the supervisor dies.
            "#pragma parallel --iterations 400 --parallel-runs 2 --max-by x\n"
            "import os, time, uuid\n"
            "open(os.path.join(where, f'started-{iteration}-{uuid.uuid4().hex}'), 'w').close()\n"
            "time.sleep(3 if iteration == 200 else 0.01)\n"
            "x = iteration",
            wait,
            # Killed again while no operation runs: replaced by the next
            # beat, before the next operation sends it anything.
            f"[name] = {supervisors}\n"
            "supervisor = ray.get_actor(name, namespace='pragma')\n"
            "print('alive:', name, ray.get(supervisor.held.remote('none'), timeout=30))\n"
            "ray.kill(supervisor, no_restart=True)\n"
            "time.sleep(3)\n"
            f"print('replaced:', {supervisors} == [name])",
            "#pragma parallel --iterations 20 --parallel-runs 2 --max-by x\nx = iteration",
            wait,
            "%pragma logs",
        ],
        timeout=240,
    )
    # Killed from elsewhere (as an out-of-memory kill) while iteration 200
    # and the other lane's task run.
    kill = (
        "import os, time\n"
        f"where = {str(marks)!r}\n"
        "deadline = time.time() + 150\n"
        "while not any(name.startswith('started-200-') for name in os.listdir(where)):\n"
        "    assert time.time() < deadline, 'iteration 200 did not start'\n"
        "    time.sleep(0.01)\n"
        f"[name] = {supervisors}\n"
        "ray.kill(ray.get_actor(name, namespace='pragma'), no_restart=True)\n"
        "print(name)\n"
    )
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        executed = pool.submit(client.execute)
        killed = started._driver(kill, check=True, timeout=180).stdout.split()[-1]
        executed.result(timeout=240)
    first, idle, second = (shown(client.nb.cells[index]).splitlines() for index in (3, 4, 6))
    logs = shown(client.nb.cells[7])
    assert "ended: succeeded 399 []" in first, first
    runs, lost = (
        int(n) for n in next(line for line in first if line.startswith("usage:")).split()[1:]
    )
    # Two tasks ran at the kill (iteration 200's and the other lane's):
    # at most those runs count, as runs and lost work, not the iterations
    # their tasks had not started; and none as a preemption (whose note
    # says "lost on the Ray cluster"): no budget is spent.
    assert 1 <= lost <= 2 and runs == 400 + lost, first
    assert "lost on the Ray cluster" not in logs, logs
    started_runs = [name.split("-")[1] for name in os.listdir(marks)]
    assert {int(i) for i in started_runs} == set(range(400)), len(started_runs)
    assert started_runs.count("200") == 2, sorted(started_runs)
    # A new supervisor took the old one's place (the killed one is no
    # longer listed, and its name is).
    assert f"alive: {killed} []" in idle, idle
    # Killed between operations, it is replaced at once, and the next
    # operation loses nothing.
    assert "replaced: True" in idle, idle
    assert "ended: succeeded 19 []" in second and "usage: 20 0" in second, second
