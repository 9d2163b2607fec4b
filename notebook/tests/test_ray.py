"""Notebook cells on a real Ray cluster: two nodes started here on the
loopback address only (``ray.cluster_utils.Cluster``), driven from real
Jupyter kernels (nbclient) with ``%pragma config backend=ray``."""

import ast
import collections
import concurrent.futures
import os
import pathlib
import signal
import time

import pytest

# Every Ray process (the nodes here, the kernels' drivers, their workers,
# this process) keeps to 127.0.0.1: Ray otherwise turns a loopback address
# into the machine's own. Ray reads it when it is imported.
LOOPBACK_ONLY = {"RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0"}
os.environ.update(LOOPBACK_ONLY)

ray = pytest.importorskip("ray", reason="Ray is installed with ./notebook[test]")
from kernels import notebook_client, run, shown  # noqa: E402
from ray.cluster_utils import Cluster  # noqa: E402


def start_cluster(with_worker=True):
    """A head node and (`with_worker`) a worker node, one CPU each, on
    127.0.0.1; the worker node, or None."""
    cluster = Cluster(
        initialize_head=True,
        head_node_args={"node_ip_address": "127.0.0.1", "num_cpus": 1, "include_dashboard": False},
    )
    worker = cluster.add_node(node_ip_address="127.0.0.1", num_cpus=1) if with_worker else None
    return cluster, worker


@pytest.fixture(scope="module")
def cluster():
    cluster, _ = start_cluster()
    yield cluster
    cluster.shutdown()


@pytest.fixture
def own_cluster():
    """A cluster of this test's own (it loses a node)."""
    cluster, worker = start_cluster()
    yield cluster, worker
    cluster.shutdown()


def on_ray(cluster, store=None):
    """The config cell that puts the kernel's operations on `cluster`."""
    line = f"%pragma config backend=ray address={cluster.address}"
    return line + (f" store={store}" if store else "")


def execute_meanwhile(client, meanwhile, timeout):
    """Runs `client`'s notebook (waiting at most `timeout` seconds for it),
    calling `meanwhile()` while it runs; what that returned."""
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        executed = pool.submit(client.execute)
        done = meanwhile()
        executed.result(timeout=timeout)
    return done


def remove_once_used(cluster, node, marks):
    """Kills `node` once an iteration marked ``started-ITERATION-NODE-...``
    in `marks` runs on it."""
    on_node = f"-{node.node_id}-"
    wait_for(
        lambda: any(on_node in name for name in files(marks, "started-")),
        "an iteration on the worker node",
    )
    cluster.remove_node(node, allow_graceful=False)


def ending_client(tmp_path, cluster, marks, cell):
    """A kernel on `cluster` that runs `cell` (which marks its runs in
    `marks`, its `where`), waits for it, and prints ``ended: STATUS
    BEST``."""
    return notebook_client(
        tmp_path,
        [
            on_ray(cluster),
            f"where = {str(marks)!r}",
            cell,
            "outcome = %pragma wait\nprint('ended:', outcome.status, outcome.best_iteration)",
        ],
        timeout=240,
    )


def printed(client, *prefixes):
    """The lines the last cell of `client` printed that start with one of
    `prefixes` (``ended:``, ``usage:``, ...)."""
    said = shown(client.nb.cells[-1]).splitlines()
    return [line for line in said if line.startswith(prefixes)]


def ended(client):
    """What the last cell of ``ending_client`` printed: its ``ended:`` lines."""
    return printed(client, "ended:")


def files(directory, prefix):
    return sorted(p.name for p in pathlib.Path(directory).glob(prefix + "*"))


def signal_its_worker(marks, iteration, signum):
    """Once `iteration` started (its mark `started-ITERATION-PID` in
    `marks`), sends `signum` to the worker process running it."""
    wait_for(lambda: files(marks, f"started-{iteration}-"), f"iteration {iteration}")
    os.kill(int(files(marks, f"started-{iteration}-")[0].split("-")[2]), signum)


def wait_for(condition, what, timeout=60):
    deadline = time.time() + timeout
    while not condition():
        assert time.time() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


PARALLEL = (
    "#pragma parallel --iterations 6 --parallel-runs 2 --max-by score\n"
    "import sys, time\n"
    "time.sleep(0.5)\n"
    "ray = sys.modules.get('ray')  # there in a Ray worker only\n"
    "node = ray.get_runtime_context().get_node_id() if ray else 'here'\n"
    "del ray\n"
    "open(f'{where}/node-{iteration}', 'w').write(node)\n"
    "score = (iteration * 7) % 5 + base\n"
)


def test_a_parallel_cell_spreads_over_both_nodes_with_the_local_backends_outcome(tmp_path, cluster):
    marks = tmp_path / "marks"
    marks.mkdir()
    cells = [
        f"base = 10\nwhere = {str(marks)!r}",
        PARALLEL,
        "outcome = %pragma wait\n"
        "print(outcome.status, outcome.best_iteration, outcome.best_score, score, "
        "outcome.failed_iterations)",
        "%pragma report",
    ]
    (tmp_path / "local").mkdir()
    local = run(tmp_path / "local", *cells)
    on_cluster = run(tmp_path, on_ray(cluster), *cells)
    # The same outcome, iteration by iteration.
    assert local[2] == "succeeded 2 14.0 14 []\n", local
    assert on_cluster[3] == local[2], (on_cluster, local)
    assert table(on_cluster[4]) == table(local[3]), (on_cluster[4], local[3])
    # Spread over both nodes of the cluster.
    nodes = {(marks / f"node-{i}").read_text() for i in range(6)}
    assert len(nodes) == 2 and "here" not in nodes, nodes


def test_what_is_applied_is_what_the_body_bound(tmp_path, cluster):
    # A Ray remote function, a module and a plain function in the notebook
    # that the body never touches are not applied; what the body assigned
    # or imported is, as running the cell inline binds it.
    texts = run(
        tmp_path,
        on_ray(cluster),
        "import ray, json\n@ray.remote\ndef double(x):\n    return 2 * x\n"
        "def helper():\n    return 1\nx = 0",
        "#pragma parallel --iterations 2 --max-by x\nimport math\nx = iteration + 1",
        "outcome = %pragma wait\nprint(sorted(outcome.applied), x, ray.get(double.remote(x)))",
    )
    assert texts[3].strip().splitlines()[-1] == "['math', 'x'] 2 4", texts


def table(report):
    """The candidate rows of a report (iteration and score), in order."""
    rows = [line.split() for line in report.splitlines()]
    return sorted(row[:2] for row in rows if len(row) >= 2 and row[0].isdigit())


def timed_cell(iterations, seconds):
    """A parallel cell of `iterations` of `seconds` each, two at a time,
    that marks each run in `where` with its time."""
    return (
        f"#pragma parallel --iterations {iterations} --parallel-runs 2 --max-by score\n"
        "import time\n"
        "begin = time.time()\n"
        f"time.sleep({seconds})\n"
        "open(f'{where}/run-{iteration}-{begin}', 'w').write(f'{begin} {time.time()}')\n"
        "score = iteration\n"
    )


def runs_marked(marks):
    """The runs `timed_cell` marked: (iteration, begin, end) each."""
    runs = []
    for path in pathlib.Path(marks).glob("run-*"):
        begin, end = path.read_text().split()
        runs.append((int(path.name.split("-")[1]), float(begin), float(end)))
    return runs


def most_at_once(runs):
    """The most runs that overlapped in time."""
    edges = sorted([(begin, 1) for _, begin, _ in runs] + [(end, -1) for *_, end in runs])
    at_once = most = 0
    for _, step in edges:
        at_once += step
        most = max(most, at_once)
    return most


# Records, in the kernel, how many iterations each Ray task is given
# (the dispatcher's own submit, called through).
COUNT_TASKS = (
    "from pragma_notebook import ray_backend\n"
    "tasks = []\n"
    "submit = ray_backend.Dispatcher.submit_batch\n"
    "def counted(self, specs, store):\n"
    "    tasks.append(len(specs))\n"
    "    return submit(self, specs, store)\n"
    "ray_backend.Dispatcher.submit_batch = counted"
)


def test_short_iterations_share_tasks_and_still_run_at_most_parallel_runs_at_once(
    tmp_path, cluster
):
    short, slow = tmp_path / "short", tmp_path / "slow"
    short.mkdir()
    slow.mkdir()
    ended_with_tasks = (
        "outcome = %pragma wait\n"
        "print(outcome.status, outcome.best_iteration, sorted(tasks))\n"
        "tasks.clear()"
    )
    texts = run(
        tmp_path,
        on_ray(cluster),
        COUNT_TASKS,
        f"where = {str(short)!r}",
        timed_cell(80, 0.001),
        ended_with_tasks,
        f"where = {str(slow)!r}",
        timed_cell(6, 0.3),
        ended_with_tasks,
        timeout=240,
    )
    status, best, tasks = texts[4].split(" ", 2)
    assert (status, best) == ("succeeded", "79"), texts
    tasks = ast.literal_eval(tasks)
    # Each iteration ran once, many of them several to a task, one after
    # another: never more than --parallel-runs at once.
    runs = runs_marked(short)
    assert sorted(i for i, *_ in runs) == list(range(80)), runs
    assert sum(tasks) == 80 and max(tasks) > 1, tasks
    assert len(tasks) < 80, tasks
    assert most_at_once(runs) <= 2, sorted(runs, key=lambda r: r[1])
    # Slow iterations run a task each, over both lanes.
    assert texts[7] == "succeeded 5 [1, 1, 1, 1, 1, 1]\n", texts
    runs = runs_marked(slow)
    assert sorted(i for i, *_ in runs) == list(range(6)), runs
    assert most_at_once(runs) == 2, sorted(runs, key=lambda r: r[1])


def test_a_node_lost_mid_operation_costs_only_its_run(tmp_path, own_cluster):
    cluster, worker_node = own_cluster
    marks = tmp_path / "marks"
    marks.mkdir()
    cell = (
        "#pragma parallel --iterations 4 --parallel-runs 2 --max-by v\n"
        "import ray, time\n"
        "node = ray.get_runtime_context().get_node_id()\n"
        "open(f'{where}/started-{iteration}-{node}-{time.time()}', 'w').close()\n"
        "time.sleep(2)\n"
        "v = iteration"
    )
    client = notebook_client(
        tmp_path,
        [
            on_ray(cluster),
            f"where = {str(marks)!r}",
            cell,
            "outcome = %pragma wait\n"
            "print('ended:', outcome.status, outcome.best_iteration, v, "
            "outcome.failed_iterations)\n"
            "print('usage:', outcome.usage['iterations_run'], outcome.usage['work_lost'])",
            "%pragma logs",
        ],
        timeout=180,
    )
    # Once an iteration runs on the worker node, the node goes.
    execute_meanwhile(client, lambda: remove_once_used(cluster, worker_node, marks), 180)
    # The lost run is said in the operation's log, not in the cells.
    *cells, logs = [shown(cell) for cell in client.nb.cells]
    assert not [text for text in cells if "was lost on the Ray cluster" in text], cells
    assert "was lost on the Ray cluster and runs again" in logs, logs
    client.nb.cells.pop()
    lines = printed(client, "ended:", "usage:")
    assert lines[0] == "ended: succeeded 3 3 []", lines
    runs, lost = map(int, lines[1].split()[1:])
    # The run cut short ran again on the other node, and counts as lost.
    assert lost >= 1 and runs >= 5, lines
    started = files(marks, "started-")
    assert {name.split("-")[1] for name in started} == {"0", "1", "2", "3"}, started


def test_a_worker_killed_under_a_task_of_several_iterations_costs_only_the_run_it_had(
    tmp_path, cluster
):
    marks = tmp_path / "marks"
    marks.mkdir()
    # Short iterations, so that tasks run several; iteration 300 is slow,
    # so that its worker process is killed while its task runs.
    cell = (
        "#pragma parallel --iterations 1000 --parallel-runs 2 --max-by v\n"
        "import os, time\n"
        "open(f'{where}/started-{iteration}-{os.getpid()}-{time.time()}', 'w').close()\n"
        "time.sleep(3 if iteration == 300 else 0.01)\n"
        "v = iteration"
    )
    client = notebook_client(
        tmp_path,
        [
            on_ray(cluster),
            COUNT_TASKS,
            f"where = {str(marks)!r}",
            cell,
            "outcome = %pragma wait\n"
            "print('ended:', outcome.status, outcome.best_iteration, outcome.failed_iterations)\n"
            "print('usage:', outcome.usage['iterations_run'], outcome.usage['work_lost'])\n"
            "print('tasks:', max(tasks))",
            "%pragma logs",
        ],
        timeout=180,
    )

    execute_meanwhile(client, lambda: signal_its_worker(marks, 300, signal.SIGKILL), 180)
    # Ray's word of the killed worker is in the operation's log, never in
    # a cell that ran meanwhile.
    *cells, logs = [shown(cell) for cell in client.nb.cells]
    assert not [text for text in cells if "died" in text or "raylet" in text], cells
    assert "-- Ray, to this kernel" in logs and "died" in logs, logs
    client.nb.cells.pop()
    lines = printed(client, "ended:", "usage:", "tasks:")
    assert lines[0] == "ended: succeeded 999 []", lines
    runs, lost = map(int, lines[1].split()[1:])
    assert int(lines[2].split()[1]) > 1, lines
    # Only the run the killed task had is lost, and runs again: those it
    # ended before are kept, those after it never started and count
    # nowhere.
    assert (runs, lost) == (1001, 1), lines
    started = files(marks, "started-")
    assert {int(name.split("-")[1]) for name in started} == set(range(1000)), len(started)
    twice = sorted(
        n for n, k in collections.Counter(int(m.split("-")[1]) for m in started).items() if k > 1
    )
    assert twice == [300], twice


def test_a_worker_told_to_stop_ends_its_iteration_first(tmp_path, cluster):
    # A SIGTERM (`ray stop`, a node drained) reaches the worker's main
    # thread, where the body runs: the body ends first, its result is
    # kept, and only then does the worker go.
    marks = tmp_path / "marks"
    marks.mkdir()
    cell = (
        "#pragma parallel --iterations 6 --parallel-runs 2 --max-by v\n"
        "import os, time\n"
        "open(f'{where}/started-{iteration}-{os.getpid()}', 'w').close()\n"
        "time.sleep(1)\n"
        "open(f'{where}/ended-{iteration}-{os.getpid()}', 'w').close()\n"
        "v = iteration"
    )
    client = notebook_client(
        tmp_path,
        [
            on_ray(cluster),
            f"where = {str(marks)!r}",
            cell,
            "outcome = %pragma wait\n"
            "print('ended:', outcome.status, outcome.best_iteration, outcome.failed_iterations)\n"
            "print('usage:', outcome.usage['iterations_run'], outcome.usage['work_lost'])",
        ],
        timeout=180,
    )

    execute_meanwhile(client, lambda: signal_its_worker(marks, 2, signal.SIGTERM), 180)
    lines = printed(client, "ended:", "usage:")
    assert lines == ["ended: succeeded 5 []", "usage: 6 0"], lines
    assert len(files(marks, "started-2-")) == 1 and files(marks, "ended-2-"), os.listdir(marks)


def test_an_operation_that_lost_a_node_grows_back_onto_a_new_one(tmp_path, own_cluster):
    cluster, worker_node = own_cluster
    marks = tmp_path / "marks"
    marks.mkdir()
    cell = (
        "#pragma parallel --iterations 16 --parallel-runs 2 --max-by v\n"
        "import ray, time\n"
        "node = ray.get_runtime_context().get_node_id()\n"
        "open(f'{where}/started-{iteration}-{node}-{time.time()}', 'w').close()\n"
        "time.sleep(1)\n"
        "v = iteration"
    )
    client = ending_client(tmp_path, cluster, marks, cell)

    def lose_a_node_and_get_one():
        remove_once_used(cluster, worker_node, marks)
        # A node joins while the operation goes on with one.
        return cluster.add_node(node_ip_address="127.0.0.1", num_cpus=1)

    new_node = execute_meanwhile(client, lose_a_node_and_get_one, 240)
    assert ended(client) == ["ended: succeeded 15"]
    started = files(marks, "started-")
    assert {name.split("-")[1] for name in started} == {str(i) for i in range(16)}, started
    # The operation grew back: its later iterations ran on the new node too.
    assert any(f"-{new_node.node_id}-" in name for name in started), started


def test_a_node_that_joins_after_the_kernel_connected_takes_iterations_too(tmp_path):
    # The kernel connects to a cluster of one node of one CPU: one
    # iteration at a time, until a second node joins.
    cluster, _ = start_cluster(with_worker=False)
    try:
        marks = tmp_path / "marks"
        marks.mkdir()
        cell = (
            "#pragma parallel --iterations 24 --max-by v\n"
            "import ray, time\n"
            "node = ray.get_runtime_context().get_node_id()\n"
            "begin = time.time()\n"
            "time.sleep(0.5)\n"
            "open(f'{where}/ran-{iteration}-{node}', 'w').write(f'{begin} {time.time()}')\n"
            "v = iteration"
        )
        client = ending_client(tmp_path, cluster, marks, cell)

        def a_node_joins():
            wait_for(lambda: files(marks, "ran-"), "a first iteration")
            return cluster.add_node(node_ip_address="127.0.0.1", num_cpus=1)

        joined = execute_meanwhile(client, a_node_joins, 240)
        assert ended(client) == ["ended: succeeded 23"]
        runs = {}
        for name in files(marks, "ran-"):
            _, iteration, node = name.split("-", 2)
            begin, end = map(float, (marks / name).read_text().split())
            runs[int(iteration)] = (node, begin, end)
        assert sorted(runs) == list(range(24)), runs
        # Two ran at once, one on the node that joined.
        on_joined = [run for run in runs.values() if run[0] == joined.node_id]
        elsewhere = [run for run in runs.values() if run[0] != joined.node_id]
        assert any(a[1] < b[2] and b[1] < a[2] for a in on_joined for b in elsewhere), runs
    finally:
        cluster.shutdown()


REPEAT = (
    "#pragma repeat --iterations 8 --checkpoint-period 3 --max-by x\n"
    "import os, sys, time\n"
    "ray = sys.modules.get('ray')  # there in a Ray worker only\n"
    "node = ray.get_runtime_context().get_node_id() if ray else None\n"
    "del ray\n"
    "runs = runs + [(iteration, os.getpid(), node)]\n"
    "open(f'{where}/ran-{iteration}-{os.getpid()}', 'w').close()\n"
    "time.sleep(0.4)\n"
    "x = x + 1\n"
)


def test_a_repeat_cell_runs_on_the_cluster_in_one_worker_and_resumes_from_its_checkpoint(
    tmp_path, cluster
):
    marks = tmp_path / "marks"
    marks.mkdir()
    client = notebook_client(
        tmp_path,
        [
            on_ray(cluster),
            f"x = 0\nruns = []\nwhere = {str(marks)!r}",
            REPEAT,
            "outcome = %pragma wait\n"
            "print('ended:', outcome.status, outcome.best_iteration, x)\n"
            "print('usage:', outcome.usage['iterations_run'], outcome.usage['work_lost'])\n"
            "print('runs:', runs)",
        ],
        timeout=180,
    )

    def kill_the_worker():
        # Past the first checkpoint (3 iterations), the worker actor that
        # holds the state dies.
        wait_for(lambda: files(marks, "ran-4-"), "iteration 4")
        killed = int(files(marks, "ran-4-")[0].split("-")[2])
        os.kill(killed, 9)
        return killed

    killed = execute_meanwhile(client, kill_the_worker, 180)
    said = shown(client.nb.cells[4])
    assert "ended: succeeded 7 8" in said, said
    usage = next(line for line in said.splitlines() if line.startswith("usage:")).split()
    assert int(usage[2]) >= 1, said  # the run cut short is lost work
    runs = eval(next(line for line in said.splitlines() if line.startswith("runs:"))[5:])
    # Every iteration once in the state, each in a Ray worker process.
    assert [run[0] for run in runs] == list(range(8)), runs
    assert all(run[2] for run in runs), runs
    # The state stayed in one worker actor from one iteration to the next:
    # the one killed had run the iterations up to the checkpoint, and the
    # one after the resume ran the last ones.
    assert runs[1][1] == runs[2][1] == killed, (runs, killed)
    assert len({run[1] for run in runs[5:]}) == 1 and runs[7][1] != killed, runs


BEATING = (
    "import time\n"
    "for beat in range(600 if iteration >= first else 0):\n"
    "    open(f'{where}/beat-{iteration}', 'w').write(str(beat))\n"
    "    time.sleep(0.1)\n"
)


@pytest.mark.parametrize(
    "directive, first, beating",
    [
        # Two tasks at once.
        ("#pragma parallel --iterations 4 --parallel-runs 2 --max-by 1", 0, 2),
        # The second iteration of a repeat, in the worker actor.
        ("#pragma repeat --iterations 4 --max-by 1", 1, 1),
    ],
    ids=["parallel", "repeat"],
)
def test_cancel_stops_the_ray_tasks_within_seconds(tmp_path, cluster, directive, first, beating):
    marks = tmp_path / "marks"
    marks.mkdir()
    client = notebook_client(
        tmp_path,
        [
            on_ray(cluster),
            f"where = {str(marks)!r}\nfirst = {first}",
            f"{directive}\n{BEATING}",
            "import os, time\n"
            f"while len(os.listdir({str(marks)!r})) < {beating}:\n"
            "    time.sleep(0.05)\n"
            "%pragma cancel\n"
            "outcome = %pragma wait\n"
            "print(outcome.status)",
        ],
    )
    client.execute()
    cancelled = time.time()
    assert shown(client.nb.cells[-1]).splitlines()[-1] == "cancelled"

    def beats():
        return {p.name: p.stat().st_mtime for p in marks.iterdir()}

    # Within a few seconds no body beats any more.
    deadline = cancelled + 5
    while True:
        before = beats()
        time.sleep(1.0)
        if beats() == before:
            break
        assert time.time() < deadline, "the Ray tasks still run after the cancel"


def test_a_kernel_restart_mid_operation_takes_up_the_runs_in_flight_and_never_reruns_a_recorded_one(
    tmp_path, cluster, monkeypatch
):
    # A restarted kernel takes up its operations on the cluster its
    # environment names.
    monkeypatch.setenv("PRAGMA_BACKEND", "ray")
    monkeypatch.setenv("RAY_ADDRESS", cluster.address)
    log = tmp_path / "runs.log"
    killed_at = tmp_path / "killed-at"
    cell = (
        "#pragma parallel --iterations 10 --parallel-runs 2 --max-by v\n"
        "import time\nstarted = time.time()\ntime.sleep(0.6)\nv = iteration\n"
        f"with open({str(log)!r}, 'a') as runs:\n"
        "    runs.write(f'{iteration} {started} {time.time()}\\n')\n"
        "del runs, started"
    )
    crash = (
        "import os, time\n"
        f"while not os.path.exists({str(log)!r}) or len(open({str(log)!r}).readlines()) < 4:\n"
        "    time.sleep(0.05)\n"
        "time.sleep(0.3)\n"
        f"open({str(killed_at)!r}, 'w').write(str(time.time()))\n"
        "os.kill(os.getpid(), 9)"
    )
    from nbclient.exceptions import DeadKernelError

    first = notebook_client(tmp_path, [cell, crash])
    with pytest.raises(DeadKernelError):
        first.execute()
    texts = run(
        tmp_path,
        "outcome = %pragma wait\nprint(outcome.status, outcome.best_iteration, v)",
    )
    assert texts[-1].strip() == "succeeded 9 9", texts
    runs = [line.split() for line in log.read_text().splitlines()]
    iterations = [int(run[0]) for run in runs]
    assert sorted(set(iterations)) == list(range(10)), runs
    # The runs in flight when the kernel died went on, and the new kernel
    # took their results: none ran again.
    kill = float(killed_at.read_text())
    in_flight = {int(i) for i, begin, end in runs if float(begin) < kill < float(end)}
    assert in_flight, runs
    for iteration in in_flight:
        assert iterations.count(iteration) == 1, (iteration, runs)
    # Only runs the records did not hold ran again: at most those
    # finished since the last record.
    assert len(runs) - 10 <= 2, runs


def test_a_large_resulting_state_comes_back_whole(tmp_path, cluster):
    # Over a MiB, a result goes from the object store to the kernel, not
    # through the supervisor.
    texts = run(
        tmp_path,
        on_ray(cluster),
        "#pragma parallel --iterations 3 --parallel-runs 2 --max-by 'blob[-1]'\n"
        "blob = bytes(3 << 20) + bytes([iteration])",
        "outcome = %pragma wait\n"
        "print(outcome.status, outcome.best_iteration, len(blob), blob[-1])",
    )
    assert texts[2].strip() == f"succeeded 2 {(3 << 20) + 1} 2", texts


def test_a_cluster_that_cannot_be_reached_is_said_at_once(tmp_path):
    texts = run(
        tmp_path,
        "%pragma config backend=ray address=127.0.0.1:9",
        "import time, pragma_notebook\nbegin = time.time()\n"
        "try:\n"
        "    pragma_notebook.submit('#pragma async\\nx = 1', {})\n"
        "except ConnectionError as error:\n"
        "    print('refused:', error, round(time.time() - begin) < 10)",
    )
    assert "refused: the Ray cluster at 127.0.0.1:9 cannot be reached" in texts[1], texts
    assert "ray start --head" in texts[1] and texts[1].strip().endswith("True"), texts


def test_ray_missing_from_the_kernel_is_said_with_how_to_install_it(tmp_path):
    texts = run(
        tmp_path,
        "%pragma config backend=ray",
        "import sys, pragma_notebook\n"
        "sys.modules['ray'] = None  # as if it were not installed\n"
        "try:\n"
        "    pragma_notebook.submit('#pragma async\\nx = 1', {})\n"
        "except ModuleNotFoundError as error:\n"
        "    print('missing:', error)",
    )
    assert "missing: backend=ray needs Ray" in texts[1] and "pip install" in texts[1], texts


def test_an_unreachable_store_fails_the_iteration_naming_it(tmp_path, cluster, s3_store):
    url = s3_store("ray")
    # The kernel reaches the store; the Ray workers are sent elsewhere.
    nowhere = '{"env_vars":{"AWS_ENDPOINT":"http://127.0.0.1:9"}}'
    texts = run(
        tmp_path,
        f"{on_ray(cluster, url)} ray.runtime_env={nowhere}",
        "#pragma parallel --iterations 2 --max-by v\nv = iteration",
        "outcome = %pragma wait\nprint(outcome.status)\nprint(outcome.errors[0])",
        timeout=180,
    )
    lines = texts[2].splitlines()
    assert lines[-2] == "failed", texts
    assert f"the store `{url}` cannot be reached from" in lines[-1], texts
    # And the submitting cell's line says so.
    assert f"iteration 0 failed: the store `{url}` cannot be reached" in texts[1], texts


def test_the_ray_backend_passes_the_execution_backend_conformance_suite(tmp_path, cluster):
    from pragma_notebook import _native
    from pragma_notebook.ray_backend import Dispatcher

    try:
        dispatcher = Dispatcher(cluster.address)
        found = _native.ray_backend_conformance(dispatcher, dispatcher.capacity(), str(tmp_path))
    finally:
        ray.shutdown()
    assert found is None, found


def test_a_large_state_reaches_ray_tasks_by_its_blobs_written_once(tmp_path, cluster):
    # 16 MB of data: its buffer is a blob of the (shared) store, which each
    # task maps; a task that changes it writes a new blob, the rest none.
    texts = run(
        tmp_path,
        on_ray(cluster),
        "import os\nimport numpy as np\ndata = np.arange(2_000_000, dtype=np.float64)\n"
        "def blobs():\n    return sum(len(f) for _, _, f in os.walk('.pragma/blobs'))",
        "#pragma parallel --iterations 4 --parallel-runs 2 --max-by 'float(data[1])'\n"
        "if iteration == 3:\n    data = data * 2\ntotal = float(data.sum())",
        "outcome = %pragma wait\nprint(outcome.status, outcome.best_iteration, data[1], blobs())",
    )
    # The submitted data and the one iteration's new data: two blobs.
    assert texts[-1].strip() == "succeeded 3 2.0 2", texts
