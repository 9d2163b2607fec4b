"""The notebook host in a real Jupyter kernel, driven by nbclient."""

import json
import os
import pathlib
import subprocess

import nbformat
import pytest
from nbclient import NotebookClient


def run(tmp_path, *cells, timeout=120):
    """Runs the cells in a fresh kernel; the text each printed."""
    notebook = nbformat.v4.new_notebook()
    notebook.cells = [nbformat.v4.new_code_cell("%load_ext pragma_notebook")] + [
        nbformat.v4.new_code_cell(cell) for cell in cells
    ]
    client = NotebookClient(
        notebook,
        timeout=timeout,
        kernel_name="python3",
        resources={"metadata": {"path": str(tmp_path)}},
    )
    client.execute()
    texts = []
    for cell in notebook.cells[1:]:
        text = ""
        for output in cell.outputs:
            if output.get("output_type") == "stream":
                text += output["text"]
            elif "data" in output:
                if "image/svg+xml" in output["data"]:
                    text += "[svg]" + output["data"]["image/svg+xml"]
                else:
                    text += output["data"].get("text/plain", "")
        texts.append(text)
    return texts


def test_a_repeat_cell_runs_in_the_background_and_its_best_checkpoint_lands(tmp_path):
    texts = run(
        tmp_path,
        "x = 0",
        '#pragma repeat --iterations 6 --checkpoint-period 2 --max-by "x if x <= 4 else -x"\n'
        "x = x + 1",
        "y = 5",
        "outcome = %pragma wait\nprint(outcome.status, outcome.best_iteration, outcome.best_score)",
        "print(x, y)",
    )
    assert "running in the background" in texts[1], texts
    assert texts[3].strip() == "succeeded 3 4.0", texts
    assert texts[4].strip() == "4 5", texts


def test_a_plain_cell_runs_at_once_while_an_operation_works(tmp_path):
    texts = run(
        tmp_path,
        "import time\nstarted = time.time()",
        "#pragma repeat --iterations 6 --max-by n\nimport time\ntime.sleep(0.5)\nn = iteration",
        "print(time.time() - started < 1.0)",
        "%pragma wait\nprint(n, time.time() - started > 2.5)",
    )
    assert texts[2].strip() == "True", texts
    assert texts[3].strip() == "5 True", texts


def test_a_parallel_cell_leaves_no_iteration_variable(tmp_path):
    texts = run(
        tmp_path,
        '#pragma parallel --iterations 5 --iteration-var i --min-by "abs(y - 5)"\ny = i * 2',
        "%pragma wait\nprint(y, 'i' in globals())",
    )
    assert texts[1].strip() == "4 False", texts


def test_input_interrupts_the_operation_and_nothing_is_applied(tmp_path):
    texts = run(
        tmp_path,
        "answer = 'unchanged'",
        "#pragma repeat --iterations 2 --max-by 1\nanswer = input('name? ')",
        "outcome = %pragma wait\nprint(outcome.status, answer)\nprint(outcome.reason)",
    )
    lines = texts[2].splitlines()
    assert lines[0] == "interrupted unchanged", texts
    assert lines[1].startswith("iteration 0:") and "input() was called" in lines[1], texts


def test_an_unsaveable_variable_is_named_before_anything_runs_and_can_be_excluded(tmp_path):
    texts = run(
        tmp_path,
        "f = open('/dev/null')\nn = 1",
        "#pragma repeat --iterations 1 --max-by n\nn = 2",
        "%pragma exclude f\nprint('excluded')",
        "#pragma repeat --iterations 1 --max-by n\nn = 3",
        "%pragma wait\nprint(n, f.closed)",
    )
    assert "The following variables cannot be serialized: f (TextIOWrapper)" in texts[1], texts
    assert "%pragma exclude" in texts[1], texts
    assert texts[4].strip() == "3 False", texts


@pytest.mark.parametrize(
    "settle, expected",
    [("--take-background", "99 1"), ("--keep-live", "99 2")],
)
def test_a_variable_changed_on_both_sides_is_a_conflict_settled_explicitly(
    tmp_path, settle, expected
):
    texts = run(
        tmp_path,
        "notes = 0\nmodel = 0",
        "#pragma repeat --iterations 1 --max-by model\nimport time\ntime.sleep(1.5)\n"
        "notes = 1\nmodel = 99",
        "notes = 2",
        "outcome = %pragma wait\nprint(outcome.conflicts, model, notes)",
        f"%pragma apply {settle} notes",
        "print(model, notes)",
    )
    # The rest is applied; the conflict is left alone until settled.
    assert texts[3].strip() == "['notes'] 99 2", texts
    assert texts[5].strip() == expected, texts


def test_a_rule_declared_up_front_settles_conflicts(tmp_path):
    texts = run(
        tmp_path,
        "%pragma config on_conflict=take-background\nnotes = 0",
        "#pragma repeat --iterations 1 --max-by 1\nimport time\ntime.sleep(1.5)\nnotes = 1",
        "notes = 2",
        "outcome = %pragma wait\nprint(outcome.conflicts, notes)",
    )
    assert texts[3].strip() == "[] 1", texts


def test_the_store_is_the_one_pragma_status_reads(tmp_path):
    run(
        tmp_path,
        "#pragma parallel --iterations 2 --max-by v\nv = iteration",
        "%pragma wait",
    )
    ops = list((tmp_path / ".pragma" / "ops").iterdir())
    assert len(ops) == 1
    outcome = json.loads((ops[0] / "outcome.json").read_text())
    assert outcome["status"] == "succeeded" and outcome["best"]["iteration"] == 1


def test_report_shows_the_chart_inline_and_logs_show_each_runs_output(tmp_path):
    notebook_texts = run(
        tmp_path,
        '#pragma parallel --iterations 3 --max-by v\nv = iteration\nprint("ran", iteration)',
        "%pragma wait",
        "%pragma logs --iteration 2",
        "%pragma report",
    )
    assert "== iteration 2 attempt 1 stdout\nran 2" in notebook_texts[2], notebook_texts
    chart = notebook_texts[3]
    assert chart.startswith("[svg]<svg") and "best: iteration 2" in chart, notebook_texts


def test_a_model_trained_a_step_per_iteration_lands_as_its_best_checkpoint(tmp_path):
    texts = run(
        tmp_path,
        "from sklearn.datasets import load_digits\n"
        "from sklearn.linear_model import SGDClassifier\n"
        "from sklearn.model_selection import train_test_split\n"
        "import numpy as np\n"
        "X, y = load_digits(return_X_y=True)\n"
        "x_train, x_test, y_train, y_test = train_test_split(X, y, test_size=0.3, random_state=0)\n"
        "model = SGDClassifier(random_state=0)\n"
        "classes = np.unique(y)",
        "#pragma repeat --iterations 10 --checkpoint-period 2 "
        '--max-by "model.score(x_test, y_test)"\n'
        "model.partial_fit(x_train, y_train, classes=classes)",
        "outcome = %pragma wait\n"
        "print(outcome.status, outcome.best_iteration in (1, 3, 5, 7, 9))\n"
        "print(outcome.best_score == model.score(x_test, y_test), outcome.best_score > 0.8)",
    )
    assert texts[2].splitlines() == ["succeeded True", "True True"], texts


def test_a_list_changed_in_place_meanwhile_is_a_conflict(tmp_path):
    texts = run(
        tmp_path,
        "notes = [1]",
        "#pragma repeat --iterations 1 --max-by 1\n"
        "import time\ntime.sleep(1.5)\nnotes = notes + [2]",
        "notes.append(3)",
        "outcome = %pragma wait\nprint(outcome.conflicts, notes)",
    )
    assert texts[3].strip() == "['notes'] [1, 3]", texts


def test_pragma_status_and_report_show_notebook_operations(tmp_path):
    pragma = pathlib.Path(__file__).resolve().parents[2] / "target" / "debug" / "pragma"
    if not pragma.exists():
        # Under CI it must run: scripts/test builds it (cargo nextest) first.
        assert not os.environ.get("CI"), f"{pragma} is missing"
        pytest.skip("the pragma binary is not built (cargo build -p pragma-cli)")
    run(
        tmp_path,
        "#pragma parallel --iterations 3 --max-by v\nv = iteration * 10",
        "%pragma wait",
    )
    status = subprocess.run(
        [pragma, "status", "--json"], cwd=tmp_path, capture_output=True, text=True, check=True
    )
    line = json.loads(status.stdout.splitlines()[0])
    assert line["status"]["status"] == "succeeded", line
    assert line["best"] == {"iteration": 2, "score": 20.0}, line
    report = subprocess.run(
        [pragma, "report", line["op"]], cwd=tmp_path, capture_output=True, text=True, check=True
    )
    assert "2  20  <- best" in report.stdout, report.stdout


def test_the_submitting_cell_shows_live_progress_in_place(tmp_path):
    notebook_texts = run(
        tmp_path,
        "#pragma repeat --iterations 4 --max-by n\nimport time\ntime.sleep(0.4)\nn = iteration",
        "import time\ntime.sleep(1.2)\nprint('meanwhile')",
        "%pragma wait\ntime.sleep(1.0)",
    )
    shown = notebook_texts[0]
    assert "4/4 iterations done" in shown and "ended" in shown, notebook_texts
    assert "best 3.0 (iteration 3)" in shown, notebook_texts
    # No progress leaks into the other cells.
    assert notebook_texts[1].strip() == "meanwhile", notebook_texts
    assert "iterations done" not in notebook_texts[2], notebook_texts
