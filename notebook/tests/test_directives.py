"""What a `#pragma` cell says before it runs: near misses named, errors in
its directive, code or selection expression found before anything runs,
a cell submitted again while it runs, an interrupt during submission."""

import os
import re
import signal
import time

from kernels import run_notebook
from pragma_notebook.operations import _interrupts_deferred


def test_a_near_miss_directive_is_named_and_the_cell_does_not_run(tmp_path):
    texts = run_notebook(
        tmp_path,
        [
            "%load_ext pragma_notebook",
            "ran = []",
            "# pragma repeat --iterations 2 --max-by 1\nran.append(1)",
            "#Pragma parallel --iterations 2 --max-by 1\nran.append(2)",
            "ran.append(3)\n#pragma repeat --iterations 2 --max-by 1",
            "# pragma: no cover\nran.append(4)",
            "print(ran)",
        ],
    )
    assert "`# pragma repeat --iterations 2 --max-by 1` is not a #pragma directive" in texts[2]
    assert "the cell did not run" in texts[2], texts
    assert "`#Pragma parallel --iterations 2 --max-by 1` is not a" in texts[3], texts
    assert "line 2, `#pragma repeat" in texts[4] and "the cell's first line" in texts[4], texts
    # A coverage comment is not a directive: that cell runs inline.
    assert texts[6].strip() == "[4]", texts


def test_errors_in_a_cell_are_found_before_anything_runs(tmp_path):
    texts = run_notebook(
        tmp_path,
        [
            "%load_ext pragma_notebook\nimport os",
            "#pragma repeat --iteratons 2 --max-by 1\nx = 1",
            "#pragma repeat --iterations 2 --max-by 'x +'\nx = 1",
            "#pragma repeat --iterations 2 --max-by x\nx = 1\nif x\n    y = 2",
            "print(os.path.isdir('.pragma/ops') and os.listdir('.pragma/ops'))",
        ],
    )
    assert "did you mean `--iterations`?" in texts[1], texts
    assert "In[2]:1:16" in texts[1], texts
    assert "the selection expression `x +` does not compile" in texts[2], texts
    assert "the cell's code does not compile (line 3)" in texts[3], texts
    assert texts[4].strip() in ("False", "[]"), texts


def test_a_cell_submitted_again_while_it_runs_says_so_and_starts_nothing(tmp_path):
    cell = "#pragma repeat --iterations 1 --max-by 0\nimport time\ntime.sleep(2)\nx = 1"
    texts = run_notebook(
        tmp_path,
        [
            "%load_ext pragma_notebook",
            cell,
            cell,
            "import pragma_notebook as pn\nprint(len(pn.kernel().ops))\n%pragma wait\nprint(x)",
        ],
    )
    op = re.search(r"op-[0-9a-f]+", texts[2])[0]  # type: ignore[index]
    assert f"{op}: this cell is running in the background already; nothing new" in texts[2]
    assert f"`%pragma cancel {op}`, then this cell again, starts it over" in texts[2], texts
    assert texts[3].split() == ["1", "1"], texts


def test_an_interrupt_while_submitting_waits_until_the_operation_is_followed():
    with _interrupts_deferred() as interrupted:
        os.kill(os.getpid(), signal.SIGINT)
        time.sleep(0.2)  # the handler runs here: held back
    assert interrupted


def test_a_cancelled_repeat_reports_its_best_so_far_and_apply_takes_it(tmp_path):
    texts = run_notebook(
        tmp_path,
        [
            "%load_ext pragma_notebook",
            "x = 0",
            "#pragma repeat --iterations 50 --max-by x\nimport time\ntime.sleep(0.2)\nx = x + 1",
            "import time\ntime.sleep(2)\n%pragma cancel\noutcome = %pragma wait\n"
            "print(outcome.status, outcome.best_iteration is not None, x)",
            "outcome = %pragma apply\nprint(x == outcome.best_iteration + 1, x > 0)",
        ],
    )
    # The cancel says what it kept and how to apply it; nothing is
    # applied until asked.
    said, printed = texts[3].strip().splitlines()
    assert re.fullmatch(
        r"op-\w+ cancelled after \d+ of 50 iterations; its best so far \(iteration \d+,"
        r" score \d+\) is kept, not applied: `%pragma apply op-\w+` applies it",
        said,
    ), texts
    assert printed == "cancelled True 0", texts
    assert texts[4].strip() == "True True", texts


def test_readonly_variables_are_loaded_never_saved_back_and_never_a_conflict(tmp_path):
    texts = run_notebook(
        tmp_path,
        [
            "%load_ext pragma_notebook\n%pragma config on_conflict=ask",
            "data = [1, 2, 3]\ntotal = 0",
            "#pragma repeat --iterations 2 --max-by total\n#pragma readonly data\n"
            "import time\ntime.sleep(1)\ntotal = total + sum(data)\ndata.append(99)",
            "data = [5]",
            "outcome = %pragma wait\nprint(total, data, outcome.conflicts)",
            "#pragma repeat --iterations 1 --max-by 0\n#pragma ro data total\ndata = []",
            "outcome = %pragma wait\nprint(outcome.status, data)\nprint(outcome.errors)",
            "#pragma repeat --iterations 1 --max-by 0\n#pragma readonly nothing_here\nx = 1",
        ],
    )
    # Read (6, then 6 + 99 + 6: the run sees its own change in place, as
    # inline), that change not saved back, and the notebook's own change
    # meanwhile no conflict.
    assert texts[4].strip() == "111 [5] []", texts
    lines = texts[6].splitlines()
    assert lines[0] == "failed [5]", texts
    assert "the body binds or deletes data, but `#pragma readonly`" in lines[1], texts
    assert "`#pragma readonly` names nothing_here, which the notebook does not have" in texts[7]


def test_datasphere_state_magics_leave_variables_out_and_take_them_back(tmp_path):
    texts = run_notebook(
        tmp_path,
        [
            "%load_ext pragma_notebook",
            "log = open('log.txt', 'w')\nsecret = 1\nx = 0",
            "%state_exclude log secret\n%state_exclude_ls",
            "#pragma repeat --iterations 1 --max-by x\nx = 1\nhidden = 'secret' in globals()",
            "%pragma wait\nprint(x, hidden)",
            "%state_include secret\n%state_exclude_ls",
            "%state_include_all\n%state_exclude_ls",
        ],
    )
    assert texts[2].strip() == "log secret", texts
    assert texts[4].strip() == "1 False", texts
    assert texts[5].strip() == "log", texts
    assert texts[6].strip() == "(nothing is excluded)", texts
