"""``%pragma extend``: more iterations of an operation that succeeded, in a
real kernel: a repeat goes on from its last state, a parallel operation
runs its next iterations, and the best of all is applied."""

from kernels import run, run_notebook
from test_inline_semantics import PROBE


def test_a_repeat_and_a_parallel_search_go_on_where_they_ended(tmp_path):
    texts = run(
        tmp_path,
        "w = 0",
        "#pragma repeat --iterations 4 --max-by w\nw = w + 1",
        "o = %pragma wait\nprint(o.best_iteration, w)",
        "%pragma extend 3",
        "o = %pragma wait\nprint(o.status, o.best_iteration, w, o.usage['iterations_run'])",
        "#pragma parallel --iterations 4 --max-by x\nx = iteration * 10",
        "o = %pragma wait\nprint(o.best_iteration, x)",
        "import pragma_notebook as pn\npn.extend(more=2)",
        "o = %pragma wait\nprint(o.status, o.best_iteration, x, o.usage['iterations_run'])",
    )
    assert texts[2].strip() == "3 4", texts
    assert "3 more iterations running in the background" in texts[3], texts
    # From the last state (w = 4): three more make 7, the best of all.
    assert texts[4].strip().splitlines()[-1] == "succeeded 6 7 7", texts
    assert texts[6].strip() == "3 30", texts
    assert texts[8].strip().splitlines()[-1] == "succeeded 5 50 6", texts


def test_an_operation_that_did_not_succeed_is_not_extended(tmp_path):
    texts = run_notebook(
        tmp_path,
        [
            "%load_ext pragma_notebook\nx = 0",
            "#pragma repeat --iterations 100 --max-by x\nimport time\ntime.sleep(0.2)\nx = 1",
            "import time\ntime.sleep(1)\n%pragma cancel\no = %pragma wait\nprint(o.status)",
            "%pragma extend 5",
        ],
    )
    assert texts[2].strip().splitlines()[-1] == "cancelled", texts
    assert "cannot be extended: it did not finish" in texts[3], texts
    assert "resume it" in texts[3], texts


def test_a_repeat_extended_leaves_what_the_body_run_as_often_inline_leaves(tmp_path):
    # Two iterations, then two more: the notebook afterwards is what four
    # runs of the body inline leave (values, shared objects, functions
    # bound to the notebook's globals, an instance of a notebook class).
    setup = (
        "k = 1\nhist = []\nalias = hist\ndef f():\n    return k\n"
        "class C:\n    pass\nc = C()\nc.n = 0"
    )
    body = "hist.append(len(hist))\nc.n += 1\nk = k + 1\nr = f()"
    check = "print(hist, alias is hist, c.n, k, r, f(), type(c).__name__)"
    (tmp_path / "inline").mkdir()
    (tmp_path / "background").mkdir()
    inline = run_notebook(tmp_path / "inline", [setup, body, body, body, body, check, PROBE])
    background = run_notebook(
        tmp_path / "background",
        [
            "%load_ext pragma_notebook",
            setup,
            "#pragma repeat --iterations 2 --max-by len(hist)\n" + body,
            "%pragma wait",
            "%pragma extend 2",
            "o = %pragma wait\nprint(o.status, o.best_iteration)\ndel o",
            check,
            PROBE,
        ],
    )
    assert background[5].strip().splitlines()[-1] == "succeeded 3", background
    assert inline[5].strip() == "[0, 1, 2, 3] True 4 5 5 5 C", inline
    assert background[6] == inline[5], (inline, background)
    assert background[7] == inline[6], (inline[6], background[7])
