"""A cell run in the background means what it means inline: the same cells
run inline in one real kernel and under ``#pragma repeat --iterations 1``
in another, and what the notebook sees afterwards compared: values,
which names share one object, what functions are bound to, and what the
cells after the operation print.

Each case is ``(setup, body, check)``: the setup cell runs first, then the
body (inline, or as the operation's body, waited for), then the check
cell, whose printed text is compared, and then a probe of the whole
namespace. All cases run in one kernel per side, separated by
``%reset -f``.
"""

from kernels import run_cells, run_notebook

# Describes the namespace: each variable's value (functions by whether
# they are bound to the notebook's globals, classes by name and module),
# and the groups of names that hold one object.
PROBE = """
def _probe(ns):
    import json, re, types
    names = sorted(
        n for n in ns
        if not n.startswith('_') and n not in ('In', 'Out', 'get_ipython', 'exit', 'quit')
    )
    values, holders = {}, {}
    for n in names:
        v = ns[n]
        if isinstance(v, types.ModuleType):
            values[n] = 'module ' + v.__name__
            continue
        holders.setdefault(id(v), []).append(n)
        if isinstance(v, types.FunctionType):
            values[n] = f'function {v.__qualname__} bound={v.__globals__ is ns}'
        elif isinstance(v, type):
            values[n] = f'class {v.__module__}.{v.__qualname__}'
        elif isinstance(v, (set, frozenset)):
            values[n] = f'{type(v).__name__} {sorted(v)!r}'
        else:
            values[n] = re.sub(' at 0x[0-9a-f]+', '', repr(v))
    shared = sorted(group for group in holders.values() if len(group) > 1)
    return json.dumps({'values': values, 'shared': shared}, sort_keys=True, indent=1)
print(_probe(globals()))
"""

CASES = {
    "a notebook function reads the notebook's globals after any operation": (
        "k = 1\ndef f():\n    return k",
        "z = 0",
        "k = 7\nprint(f())",
    ),
    "a notebook function called in the body reads the body's globals": (
        "k = 1\ndef f():\n    return k",
        "k = 2\nr = f()",
        "print(r)\nk = 3\nprint(f())",
    ),
    "a function's `global` statement changes the namespace": (
        "counter = 0\ndef bump():\n    global counter\n    counter += 1",
        "bump()\nbump()",
        "print(counter)\nbump()\nprint(counter)",
    ),
    "lambdas, partials and closures stay bound": (
        "import functools\nk = 1\ng = lambda: k\np = functools.partial(lambda a: a + k, 1)\n"
        "def outer():\n    x = [0]\n    def inc():\n        x[0] += 1\n        return x[0]\n"
        "    return inc\ninc = outer()",
        "inc()",
        "k = 5\nprint(g(), p(), inc())",
    ),
    "a class, its methods and its instances stay one class": (
        "import dataclasses\n@dataclasses.dataclass\nclass P:\n    x: int\n"
        "    def scaled(self):\n        return self.x * k\nk = 2\npt = P(3)\nsame_class = P",
        "pt.x += 1",
        "k = 10\nprint(pt.scaled(), type(pt) is P, isinstance(pt, same_class), P(1) == P(1))",
    ),
    "a class defined in the body is __main__'s": (
        "",
        "class Q:\n    pass\nmain = __name__ == '__main__'\nq = Q()",
        "print(Q.__module__, main, type(q) is Q)",
    ),
    "two names for one list stay one list": (
        "a = b = []",
        "a.append(1)",
        "print(a, b, a is b)\na.append(2)\nprint(b)",
    ),
    "a dict holding a list bound to another name holds that list": (
        "lst = [1]\nd = {'l': lst}",
        "lst.append(2)",
        "print(d['l'] is lst, d)",
    ),
    "two closures over one cell share it": (
        "def outer():\n    c = [0]\n    def inc():\n        c[0] += 1\n        return c[0]\n"
        "    def get():\n        return c[0]\n    return inc, get\ninc, get = outer()",
        "inc()",
        "print(get())\ninc()\nprint(get())",
    ),
    "two variables holding one object no variable names hold one object": (
        "shared = {'n': 0}\nm1 = {'s': shared}\nm2 = [shared]\ndel shared",
        "m1['s']['n'] += 1",
        "print(m2, m1['s'] is m2[0])\nm2[0]['n'] = 5\nprint(m1)",
    ),
    "a numpy view and its base stay one memory": (
        "import numpy as np\na = np.arange(6.0)\nv = a[2:5]\nr = a[::-1]\n"
        "big = np.zeros(300_000)\nhead = big[:10]",
        "v[0] = 100.0\nhead[1] = 7.0",
        "print(a, r[:4])\na[3] = -1.0\nprint(v, big[1])\nbig[2] = 3.0\nprint(head[:3])",
    ),
    "variables that refer to each other in a cycle stay so": (
        "one = []\ntwo = [one]\none.append(two)",
        "one.append(3)",
        "print(one[0] is two, two[0] is one, len(one))",
    ),
    "what the body did not touch is the same object": (
        "kept = [0]\n_kept_id = id(kept)\n"
        "names = {'alpha', 'beta', 'gamma'}\n_names_id = id(names)",
        "x = 1",
        "print(id(kept) == _kept_id, id(names) == _names_id)",
    ),
    "a large array changed in place, and a dict holding it": (
        "import numpy as np\nbig = np.zeros((1000, 200))\nholder = {'b': big}\n"
        "untouched = np.ones(300_000)",
        "big[0, 0] = 1.0",
        "print(big[0, 0], holder['b'] is big, big.flags.writeable, untouched.sum())",
    ),
    "in-place changes and deletions": (
        "x = [1, 2]\ny = 3\nw = {'a': 1}",
        "x.append(3)\ndel y\nw['b'] = 2",
        "print('y' in globals(), x, w)",
    ),
    "imports in the body": (
        "",
        "import json as j\nimport os.path",
        "print(j.dumps([1]), os.path.join('a', 'b'))",
    ),
    "IPython's syntax, get_ipython() and display() in the body": (
        "",
        "%time y = 1\nfiles = !echo a b\ndisplay('shown')\nshell = get_ipython() is not None",
        "print(y, files, shell)",
    ),
    "a variable named like the iteration variable is the user's": (
        "iteration = 'mine'",
        "z = 1",
        "print(iteration)",
    ),
    "the iteration variable assigned by the body stays": (
        "",
        "iteration = 'theirs'",
        "print(iteration)",
    ),
    "the body runs in the kernel's working directory": (
        "import os\nos.makedirs('sub', exist_ok=True)\nos.chdir('sub')",
        "import pathlib\npathlib.Path('written.txt').write_text('hi')\n"
        "where = os.path.basename(os.getcwd())",
        "print(where, os.path.exists('written.txt'))\nos.chdir('..')",
    ),
    "the body sees the kernel's environment and sys.path": (
        "import os, pathlib, sys\nos.environ['PRAGMA_CASE'] = 'yes'\n"
        "os.makedirs('mods', exist_ok=True)\n"
        "pathlib.Path('mods/case_module.py').write_text('V = 42')\n"
        "sys.path.insert(0, os.path.abspath('mods'))",
        "seen = os.environ.get('PRAGMA_CASE')\nimport case_module\nv = case_module.V",
        "print(seen, v)",
    ),
}


# A cell's helper: how many data blobs the store holds.
BLOBS = "def blobs():\n    return sum(len(f) for _, _, f in os.walk('.pragma/blobs'))"


def cells_of(cases, background):
    """The cells of all cases, and for each case the index of its check
    cell (its probe follows)."""
    cells = ["%load_ext pragma_notebook"] if background else []
    checks = []
    for setup, body, check in cases:
        cells.append("%reset -f")
        cells.append(setup or "pass")
        if background:
            cells.append("#pragma repeat --iterations 1 --max-by 0\n" + body)
            cells.append("%pragma wait")
        else:
            cells.append(body)
            cells.append("pass")
        checks.append(len(cells))
        cells.append(check)
        cells.append(PROBE)
    return cells, checks


def test_cells_under_pragma_leave_what_they_leave_inline(tmp_path):
    cases = list(CASES.values())
    (tmp_path / "inline").mkdir()
    (tmp_path / "background").mkdir()
    inline_cells, checks = cells_of(cases, background=False)
    background_cells, background_checks = cells_of(cases, background=True)
    inline = run_notebook(tmp_path / "inline", inline_cells)
    background = run_notebook(tmp_path / "background", background_cells)
    differences = []
    for name, at, background_at in zip(CASES, checks, background_checks, strict=True):
        for what, offset in (("printed", 0), ("namespace", 1)):
            if inline[at + offset] != background[background_at + offset]:
                differences.append(
                    f"{name}: {what}\n--- inline\n{inline[at + offset]}"
                    f"--- under #pragma\n{background[background_at + offset]}"
                    f"(the operation: {background[background_at - 1]})"
                )
    assert not differences, "\n\n".join(differences)


def test_a_variable_changed_only_in_the_notebook_meanwhile_is_never_overwritten(tmp_path):
    # Even under take-background: the operation did not change them.
    texts = run_notebook(
        tmp_path,
        [
            "%load_ext pragma_notebook",
            "%pragma config on_conflict=take-background\nnotes = {'a', 'b'}\nseen = [1]\n"
            "def f():\n    return 1\nmodel = 0",
            "#pragma repeat --iterations 1 --max-by 0\nimport time\ntime.sleep(2)\nmodel = 99",
            "notes.add('c')\nseen.append(2)\ndef f():\n    return 2",
            "outcome = %pragma wait\nprint(sorted(notes), seen, f(), model, outcome.conflicts)",
        ],
    )
    assert texts[4].strip() == "['a', 'b', 'c'] [1, 2] 2 99 []", texts


def test_an_instance_of_a_notebook_class_changed_in_place_on_both_sides_is_a_conflict(tmp_path):
    texts = run_notebook(
        tmp_path,
        [
            "%load_ext pragma_notebook",
            "import dataclasses\n@dataclasses.dataclass\nclass P:\n    x: int\npt = P(1)\n"
            "other = P(1)",
            "#pragma repeat --iterations 1 --max-by 0\nimport time\ntime.sleep(2)\npt.x = 5\n"
            "other.x = 5",
            "pt.x = 7",
            "outcome = %pragma wait\nprint(outcome.conflicts, pt, other)",
        ],
    )
    assert texts[4].strip() == "['pt'] P(x=7) P(x=5)", texts


def test_a_body_that_raises_runs_once_unless_retries_are_asked_for(tmp_path):
    body = (
        "#pragma repeat --iterations 1 --max-by 0\n"
        "with open('runs.log', 'a') as log:\n    log.write('ran\\n')\n"
        "raise ValueError('boom')"
    )
    texts = run_notebook(
        tmp_path,
        [
            "%load_ext pragma_notebook",
            body,
            "outcome = %pragma wait\nprint(outcome.status, open('runs.log').read().count('ran'))\n"
            "print(outcome.errors)",
            "%pragma config retries=2\nimport os\nos.remove('runs.log')",
            body + "\n# again",
            "outcome = %pragma wait\nprint(outcome.status, open('runs.log').read().count('ran'))",
        ],
    )
    assert texts[2].splitlines() == ["failed 1", "{0: 'ValueError: boom'}"], texts
    assert texts[5].strip() == "failed 3", texts


def test_a_result_the_kernel_cannot_load_yet_is_kept_and_applied_once_it_can(tmp_path):
    # The body's class lives in a module only its sys.path reaches: the
    # kernel cannot load the instance until it imports from there too.
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "elsewhere" / "far_module.py").write_text("class Thing:\n    size = 3\n")
    texts = run_notebook(
        tmp_path,
        [
            "%load_ext pragma_notebook",
            "x = 0\ny = 0",
            "#pragma repeat --iterations 1 --max-by 0\nimport sys\n"
            "sys.path.insert(0, 'elsewhere')\nimport far_module\nx = far_module.Thing()\n"
            "y = 1\ndel far_module, sys",
            "outcome = %pragma wait\nprint(outcome.status, x, y)\nprint(outcome.apply_error)",
            "import sys\nsys.path.insert(0, 'elsewhere')\noutcome = %pragma apply\n"
            "print(type(x).__name__, x.size, y, outcome.apply_error)",
        ],
    )
    lines = texts[3].splitlines()
    # All or none: y is not applied without x.
    assert lines[0] == "succeeded 0 0", texts
    assert "far_module" in lines[1], texts
    assert texts[4].strip() == "Thing 3 1 None", texts


def test_data_is_written_once_whatever_operations_run_on_it(tmp_path):
    texts = run_notebook(
        tmp_path,
        [
            "%load_ext pragma_notebook",
            "import os\nimport numpy as np\ndata = np.random.default_rng(0).random((1000, 1000))\n"
            "w = np.zeros(1000)\n" + BLOBS,
            "#pragma repeat --iterations 4 --checkpoint-period 1 --min-by 'abs(w.sum() - 4)'\n"
            "w = w + data[0] / data[0].sum()",
            "%pragma wait\nprint(blobs(), round(w.sum(), 6))",
            "#pragma parallel --iterations 4 --min-by 'abs(w.sum() - 2)'\n"
            "w = w + (iteration + 1) * data[1] / data[1].sum()",
            "%pragma wait\nprint(blobs(), round(w.sum(), 6))",
        ],
    )
    # The 8 MB array is one blob, written by the first operation only.
    assert texts[3].strip() == "1 4.0", texts
    assert texts[5].strip() == "1 5.0", texts


def test_a_large_state_says_what_it_costs_before_it_runs(tmp_path):
    texts = run_notebook(
        tmp_path,
        [
            "%load_ext pragma_notebook",
            "import numpy as np\nbig = np.ones((15_000, 1000))\nsmall = np.ones(10)",
            "#pragma repeat --iterations 1 --max-by 0\nx = 1",
            "%pragma wait",
            "#pragma repeat --iterations 1 --max-by 0\ny = 1",
            "%pragma wait\nprint(open('.pragma/.gitignore').read().splitlines()[-1])",
        ],
    )
    assert "the state is 120.0 MB (big 120.0 MB, small 0.0 MB, " in texts[2], texts
    assert "submitting it wrote 120.0 MB" in texts[2], texts
    assert "submitting it wrote 0.0 MB" in texts[4], texts
    assert texts[5].strip() == "*", texts


def test_the_collector_deletes_only_data_no_stored_state_names(tmp_path):
    texts = run_notebook(
        tmp_path,
        [
            "%load_ext pragma_notebook",
            "import os\nimport numpy as np\nimport pragma_notebook\nbig = np.zeros((500, 500))\n"
            + BLOBS,
            # Each checkpoint's big is new data; the best is the first.
            "#pragma repeat --iterations 4 --max-by '-float(big[0, 0])'\nbig = big + 1",
            "%pragma wait\nprint(blobs(), big[0, 0])",
            "print(pragma_notebook.collect_garbage(grace_seconds=0)[0], blobs())",
            # What the store still names loads: the kept checkpoints, and a
            # new operation on the data.
            "#pragma repeat --iterations 1 --max-by '-float(big[0, 0])'\nbig = big * 2",
            "%pragma wait\nprint(big[0, 0])",
        ],
    )
    made = int(texts[3].split()[0])
    assert made == 5 and texts[3].split()[1] == "1.0", texts
    deleted, left = map(int, texts[4].split())
    assert deleted >= 1 and deleted + left == made, texts
    assert texts[6].strip() == "2.0", texts


def test_the_collector_runs_by_itself_once_a_result_is_applied(tmp_path):
    texts = run_notebook(
        tmp_path,
        [
            "%load_ext pragma_notebook",
            "import os\nimport numpy as np\nimport pragma_notebook\n"
            "pragma_notebook.kernel().collect_grace = 0\nbig = np.zeros((500, 500))\n" + BLOBS,
            "#pragma repeat --iterations 4 --max-by '-float(big[0, 0])'\nbig = big + 1",
            "%pragma wait\npragma_notebook.kernel().collector.join()\nprint(blobs(), big[0, 0])",
            "print(*pragma_notebook.collect_garbage(grace_seconds=0))",
        ],
    )
    # Made: the data submitted and each iteration's; the first is the best.
    left, best = texts[3].split()
    assert int(left) < 5 and best == "1.0", texts
    # Nothing was left for a collection by hand.
    assert texts[4].split() == ["0", "0"], texts


def test_a_body_that_forks_is_answered_for_by_its_worker_only(tmp_path):
    # Inline a kernel that forks is two kernels; in a worker, the child
    # ends where the body does, and the worker goes on answering.
    texts = run_notebook(
        tmp_path,
        [
            "%load_ext pragma_notebook\n%pragma config workers=1",
            "#pragma repeat --iterations 3 --max-by x\nimport os\npid = os.fork()\n"
            "if pid:\n    os.waitpid(pid, 0)\nx = iteration\ndel pid",
            "outcome = %pragma wait\nprint(outcome.status, x)",
            "#pragma repeat --iterations 2 --max-by '-abs(y - 7)'\ny = 7",
            "outcome = %pragma wait\nprint(outcome.status, y)",
            "#pragma repeat --iterations 1 --max-by 'str(y)'\nz = 1",
            "outcome = %pragma wait\nprint(outcome.status, outcome.reason)",
        ],
    )
    assert texts[2].strip() == "succeeded 2", texts
    assert texts[4].strip() == "succeeded 7", texts
    # A score must be a number, not text that reads as one.
    assert texts[6].startswith("failed"), texts
    assert "the score is str '7', not a number" in texts[6], texts


def test_what_a_body_does_to_its_process_does_not_reach_the_next_operation(tmp_path):
    # Inline, the patch would be the kernel's; in the background it is
    # the worker's, and the kernel and the next operation do not see it.
    # One worker: the next operation would take the same process.
    printed = run_cells(
        tmp_path,
        [
            "%load_ext pragma_notebook\n%pragma config workers=1",
            "#pragma repeat --iterations 2 --max-by 0\nimport json, os\n"
            "json.dumps = lambda *a, **k: 'patched'\nseen = json.dumps([1])\n"
            "first = os.getpid()",
            "%pragma wait\nprint(seen)",
            "#pragma repeat --iterations 1 --max-by 0\nimport json, os\nafter = json.dumps([1])\n"
            "second = os.getpid()",
            "%pragma wait\nimport json\nprint(after, json.dumps([2]), first != second)",
        ],
    )
    assert printed[2] == "patched\n"
    assert printed[4] == "[1] [2] True\n"
