"""``%pragma extend``: more iterations of an operation that succeeded, in a
real kernel: a repeat goes on from its last state, a parallel operation
runs its next iterations, and the best of all is applied."""

from kernels import run, run_notebook


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
