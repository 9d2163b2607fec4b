"""The notebook host in a real Jupyter kernel, driven by nbclient."""

import json
import os
import pathlib
import queue
import re
import subprocess
import time

import pytest
from jupyter_client.manager import start_new_kernel
from kernels import (
    kernel_messages,
    notebook_client,
    printed_by,
    run,
    shown,
)
from nbclient.exceptions import DeadKernelError


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
    # The cell's panel says how it ended, in the cell's own output.
    assert re.match(
        r"In\[\d+\] · succeeded · 6/6 iterations done · best 4 \(iteration 3\)", texts[1]
    ), texts
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
    shown_first = notebook_texts[0]
    assert "4/4 iterations done" in shown_first, notebook_texts
    # A whole number of a score shows as the body made it.
    assert "best 3 (iteration 3)" in shown_first, notebook_texts
    # Once applied, the submitting cell's display says so.
    assert " · succeeded · " in shown_first, notebook_texts
    assert shown_first.endswith("\napplied: n"), notebook_texts
    # No progress leaks into the other cells.
    assert notebook_texts[1].strip() == "meanwhile", notebook_texts
    assert "iterations done" not in notebook_texts[2], notebook_texts


def test_the_saved_notebook_keeps_the_panel_s_final_widget_state(tmp_path):
    # nbclient (papermill, nbconvert --execute) records widget state from
    # the messages of the cell it runs: the panel's updates are sent under
    # the running cell's request, so the saved state is the ending, not
    # the panel as it was when the submitting cell returned.
    client = notebook_client(
        tmp_path,
        [
            "#pragma repeat --iterations 4 --max-by n\nimport time\ntime.sleep(0.3)\nn = iteration",
            "%pragma wait",
        ],
    )
    client.execute()
    state = client.nb.metadata["widgets"]["application/vnd.jupyter.widget-state+json"]["state"]
    bars = [m["state"] for m in state.values() if m["model_name"] == "IntProgressModel"]
    assert [(bar["value"], bar["max"]) for bar in bars] == [(4, 4)], bars


def test_an_interrupted_submission_either_did_not_happen_or_is_reachable(tmp_path):
    # The kernel's Interrupt lands at several moments of submitting 320 MB:
    # saving it, handing it over, after. Whichever: every operation the
    # store has is one this kernel follows (`%pragma wait` reaches it, and
    # it is applied); none runs unseen, to be taken up by a later kernel.
    km, kc = start_new_kernel(kernel_name="python3", cwd=str(tmp_path))
    seen = []
    try:
        kernel_messages(
            kc,
            "%load_ext pragma_notebook\nimport os\nimport numpy as np\n"
            "import pragma_notebook as pn\n"
            "big = np.random.default_rng(0).random((40_000, 1000))\nx = 0",
        )
        for attempt, delay in enumerate((0.02, 0.05, 0.08, 0.11, 0.14, 0.17, 0.2, 0.25, 0.3)):
            # New data each time, so that submitting writes it again.
            kernel_messages(kc, f"big[0, 0] = {attempt + 1}.0")
            msg_id = kc.execute(f"#pragma repeat --iterations 1 --max-by 0\nx = {attempt + 1}")
            time.sleep(delay)
            km.interrupt_kernel()
            reply = kc.get_shell_msg(timeout=120)
            while reply["parent_header"]["msg_id"] != msg_id:  # earlier cells'
                reply = kc.get_shell_msg(timeout=120)
            check = (
                "for op in pn.kernel().ops:\n    pn.wait(op)\n"
                "stored = os.listdir('.pragma/ops') if os.path.isdir('.pragma/ops') else []\n"
                "print(sorted(stored) == sorted(pn.kernel().ops), len(pn.kernel().ops), x)"
            )
            after = printed_by(kernel_messages(kc, check))
            # The Interrupt came once the cell had ended; or the check came
            # while ipykernel still aborted what followed the error.
            if "KeyboardInterrupt" in after or not after.strip():
                after = printed_by(kernel_messages(kc, check))
            seen.append((delay, reply["content"].get("evalue", "ran")[:60], after.split()))
    finally:
        kc.stop_channels()
        km.shutdown_kernel(now=True)
    assert all(after[0] == "True" for _, _, after in seen), seen
    # An attempt submitted one operation or none; one it submitted was
    # waited for and applied.
    count = 0
    for attempt, (_, _, (_, ops, x)) in enumerate(seen):
        assert int(ops) in (count, count + 1), seen
        if int(ops) == count + 1:
            assert int(x) == attempt + 1, seen
        count = int(ops)


def test_a_result_is_applied_while_the_kernel_is_idle_and_the_submitting_cell_says_so(tmp_path):
    km, kc = start_new_kernel(kernel_name="python3", cwd=str(tmp_path))
    try:
        kernel_messages(kc, "%load_ext pragma_notebook\nx = 0\nnotes = 0")
        submitted = kernel_messages(
            kc,
            "#pragma parallel --iterations 2 --max-by x\nimport time\ntime.sleep(1)\n"
            "x = iteration + 10\nnotes = 1",
        )
        display_id = next(
            m["content"]["transient"]["display_id"]
            for m in submitted
            if m["msg_type"] == "display_data"
        )
        kernel_messages(kc, "notes = 2")
        # No cell runs now: the result comes in on its own, and the
        # submitting cell's display is updated in place.
        updates, deadline = list[str](), time.time() + 30
        while time.time() < deadline and not any("succeeded" in u for u in updates):
            try:
                message = kc.get_iopub_msg(timeout=1)
            except queue.Empty:
                continue
            if (
                message["msg_type"] == "update_display_data"
                and message["content"]["transient"]["display_id"] == display_id
            ):
                updates.append(message["content"]["data"]["text/plain"])
        printed = kernel_messages(kc, "print(x, notes)")
    finally:
        kc.stop_channels()
        km.shutdown_kernel(now=True)
    final = updates[-1]
    op = re.search(r"op-[0-9a-f]+", final)[0]  # type: ignore[index]
    assert "2/2 iterations done" in final, updates
    # What was applied, and for the conflict both values and the two
    # complete commands.
    assert final.endswith(
        "\napplied: time, x\nleft alone: notes, changed here meanwhile (background 1, here 2):"
        f" `%pragma apply {op} --take-background notes` or"
        f" `%pragma apply {op} --keep-live notes`"
    ), updates
    # Applied before the last cell ran, not after it.
    text = "".join(m["content"]["text"] for m in printed if m["msg_type"] == "stream")
    assert text.strip() == "11 2", printed


def test_an_operation_goes_on_after_its_kernel_dies_once_the_extension_is_loaded_again(
    tmp_path,
):
    cell = (
        "#pragma repeat --iterations 12 --checkpoint-period 3 --max-by total\n"
        "import time\ntime.sleep(0.3)\ntotal = total + 1\n"
        "with open('runs.log', 'a') as log:\n    log.write(f'{iteration}\\n')\ndel log"
    )
    crash = (
        "import os, time\n"
        "deadline = time.time() + 60\n"
        "while not os.path.exists('runs.log') or len(open('runs.log').read().split()) < 7:\n"
        "    assert time.time() < deadline, 'the operation does not get on'\n"
        "    time.sleep(0.05)\n"
        "os.kill(os.getpid(), 9)"
    )
    first = notebook_client(tmp_path, ["total = 0", cell, crash])
    with pytest.raises(DeadKernelError):
        first.execute()
    # A new kernel of the same notebook: loading the extension takes it up.
    texts = run(
        tmp_path,
        "total = 0",
        "outcome = %pragma wait\nprint(outcome.status, outcome.best_iteration, total)",
    )
    assert texts[-1].strip() == "succeeded 11 12", texts
    runs = [int(line) for line in (tmp_path / "runs.log").read_text().split()]
    assert sorted(set(runs)) == list(range(12)), runs
    # At most the work since the last checkpoint (3 iterations) ran twice.
    assert len(runs) - 12 <= 3, runs


def test_the_extension_says_which_operations_it_took_up(tmp_path):
    cell = "#pragma repeat --iterations 40 --max-by n\nimport time\ntime.sleep(0.2)\nn = iteration"
    first = notebook_client(
        tmp_path, [cell, "import os, time\ntime.sleep(1)\nos.kill(os.getpid(), 9)"]
    )
    with pytest.raises(DeadKernelError):
        first.execute()
    client = notebook_client(
        tmp_path, ["%pragma cancel\noutcome = %pragma wait\nprint(outcome.status)"]
    )
    client.execute()
    loaded = shown(client.nb.cells[0])
    assert "resumed in the background from its last checkpoint" in loaded, loaded
    assert shown(client.nb.cells[1]).splitlines()[-1] == "cancelled"


def test_a_worker_killed_mid_iteration_costs_only_its_run(tmp_path):
    texts = run(
        tmp_path,
        "#pragma parallel --iterations 4 --max-by v\n"
        "import os\n"
        "if iteration == 2 and not os.path.exists('killed'):\n"
        "    open('killed', 'w').close()\n"
        "    os.kill(os.getpid(), 9)\n"
        "v = iteration",
        "outcome = %pragma wait\n"
        "print(outcome.status, outcome.best_iteration, v, outcome.failed_iterations)\n"
        "print(outcome.usage['iterations_run'], outcome.usage['work_lost'])",
    )
    assert texts[1].splitlines() == ["succeeded 3 3 []", "5 1"], texts


def test_an_s3_store_keeps_the_checkpoints_in_the_bucket(tmp_path, s3_store):
    url = s3_store("notebook")
    texts = run(
        tmp_path,
        f"%pragma config store={url}",
        "#pragma parallel --iterations 3 --max-by v\nv = iteration * 10\nprint('ran', iteration)",
        "outcome = %pragma wait\nprint(outcome.status, v)",
        "%pragma logs --iteration 1",
    )
    assert texts[2].strip() == "succeeded 20", texts
    assert "ran 1" in texts[3], texts
    # Checkpoints in the bucket, records and logs on this machine.
    assert (tmp_path / ".pragma" / "remote").is_dir()
    assert not (tmp_path / ".pragma" / "store").exists()
    pragma = pathlib.Path(__file__).resolve().parents[2] / "target" / "debug" / "pragma"
    if pragma.exists():
        status = subprocess.run(
            [pragma, "status", "--store", url, "--json"],
            cwd=tmp_path,
            capture_output=True,
            text=True,
            check=True,
        )
        line = json.loads(status.stdout.splitlines()[0])
        assert line["status"]["status"] == "succeeded" and line["best"]["score"] == 20.0, line


def test_an_s3_store_keeps_data_once_by_content_and_a_machine_fetches_it(tmp_path, s3_store):
    url = s3_store("blobs")
    repeat = "#pragma repeat --iterations 3 --max-by w\nw = w + float(big[0, 0])"
    texts = run(
        tmp_path,
        f"%pragma config store={url}",
        "import numpy as np\nimport pragma_notebook as pn\nbig = np.ones((2000, 1000))\nw = 0.0",
        f"op = pn.submit({repeat!r}, globals())\nprint(op.cost.written)",
        "outcome = %pragma wait\nprint(w, outcome.usage['bytes_checkpointed'] < 1_000_000)",
        # This machine's copies gone: the workers fetch the data again.
        "import glob, shutil\nfor copies in glob.glob('.pragma/remote/*/blobs'):\n"
        "    shutil.rmtree(copies)",
        f"op = pn.submit({repeat + chr(10) + '# again'!r}, globals())\nprint(op.cost.written)",
        "outcome = %pragma wait\nprint(w, outcome.status)",
    )
    assert texts[2].strip() == "16000000", texts
    assert texts[3].strip() == "3.0 True", texts
    assert texts[5].strip() == "0", texts
    assert texts[6].strip() == "6.0 succeeded", texts
    import numpy as np
    from pragma_notebook._native import BucketBlobs as Bucket
    from pragma_notebook.blobs import BucketBlobs

    [blob] = Bucket(url).list()
    digest = blob.digest
    assert blob.size == 16_000_000
    # Another machine (no copies yet) fetches it, checked against its name.
    elsewhere = BucketBlobs(url, tmp_path / "elsewhere")
    fetched = np.frombuffer(elsewhere.get(digest).raw(), dtype=np.float64)
    assert fetched.shape == (2_000_000,) and (fetched == 1.0).all()


def test_a_kernel_restart_mid_operation_on_a_large_state_goes_on_from_its_checkpoint(tmp_path):
    # 200 MB of data in the namespace; the weights change each iteration.
    setup = (
        "import numpy as np\n"
        "data = np.random.default_rng(0).random((25_000, 1000))\n"
        "w = np.zeros(1000)"
    )
    cell = (
        "#pragma repeat --iterations 8 --checkpoint-period 2 --max-by 'float(w.sum())'\n"
        "import time\ntime.sleep(0.3)\nw = w + data[iteration] / data[iteration].sum()\n"
        "with open('runs.log', 'a') as log:\n    log.write(f'{iteration}\\n')\ndel log"
    )
    crash = (
        "import os, time\n"
        "deadline = time.time() + 60\n"
        "while not os.path.exists('runs.log') or len(open('runs.log').read().split()) < 5:\n"
        "    assert time.time() < deadline, 'the operation does not get on'\n"
        "    time.sleep(0.05)\n"
        "os.kill(os.getpid(), 9)"
    )
    first = notebook_client(tmp_path, [setup, cell, crash])
    with pytest.raises(DeadKernelError):
        first.execute()
    texts = run(
        tmp_path,
        setup,
        "outcome = %pragma wait\nprint(outcome.status, outcome.best_iteration, round(w.sum(), 6))\n"
        "print(outcome.usage['bytes_checkpointed'] < 10_000_000)",
    )
    assert texts[-1].splitlines() == ["succeeded 7 8.0", "True"], texts
    runs = [int(line) for line in (tmp_path / "runs.log").read_text().split()]
    assert sorted(set(runs)) == list(range(8)), runs
    assert len(runs) - 8 <= 2, runs
    # The data was written once, whatever ran again.
    blobs = [f for _, _, files in os.walk(tmp_path / ".pragma" / "blobs") for f in files]
    assert len(blobs) == 1, blobs


def test_a_strided_slice_the_body_only_reads_is_left_alone(tmp_path):
    # sklearn's X after picking features: a view with strides. Saved as
    # numpy pickles it, it came back a contiguous copy and was "applied".
    texts = run(
        tmp_path,
        "import numpy as np\nX = np.arange(2000.0).reshape(40, 50)[:, ::2]\nn = 0\nbefore = id(X)",
        "#pragma repeat --iterations 2 --max-by n\nn = n + X.sum()",
        "o = %pragma wait\nprint(o.applied, id(X) == before)",
    )
    assert texts[2].strip() == "['n'] True", texts


def test_without_widgets_the_cell_shows_a_text_line_updated_in_place(tmp_path):
    client = notebook_client(
        tmp_path,
        [
            "%pragma config progress=text",
            "#pragma repeat --iterations 3 --max-by n\nimport time\ntime.sleep(0.3)\nn = iteration",
            "%pragma wait",
        ],
    )
    client.execute()
    outputs = client.nb.cells[2].outputs
    # One display, no widget: its text is the ending.
    assert [o["output_type"] for o in outputs] == ["display_data"], outputs
    assert "application/vnd.jupyter.widget-view+json" not in outputs[0]["data"], outputs
    text = outputs[0]["data"]["text/plain"]
    assert re.match(r"In\[\d+\] · succeeded · 3/3 iterations done · best 2 \(iteration 2\)", text)
    applied = text.splitlines()[-1]
    assert applied.startswith("applied: "), text
    assert sorted(applied.removeprefix("applied: ").split(", ")) == ["n", "time"], text


def test_a_kernel_shut_down_mid_repeat_checkpoints_what_finished_and_the_next_runs_nothing_twice(
    tmp_path,
):
    # Checkpoints every 5: a kernel killed two iterations past one would
    # run those two again; a kernel shut down suspends its repeat, which
    # checkpoints them.
    cell = (
        "#pragma repeat --iterations 12 --checkpoint-period 5 --max-by n\n"
        "import time\ntime.sleep(0.3)\nn = n + 1\n"
        "with open('runs.log', 'a') as log:\n    log.write(f'{iteration}\\n')\ndel log"
    )
    km, kc = start_new_kernel(kernel_name="python3", cwd=str(tmp_path))
    try:
        kernel_messages(kc, "%load_ext pragma_notebook\nn = 0")
        kernel_messages(kc, cell)
        runs = tmp_path / "runs.log"
        deadline = time.time() + 60
        while not runs.exists() or len(runs.read_text().split()) < 7:
            assert time.time() < deadline, "the operation does not get on"
            time.sleep(0.05)
    finally:
        kc.stop_channels()
        # As Jupyter shuts a kernel down or restarts it: it is asked, and
        # killed if it has not exited within 5 s.
        km.shutdown_kernel(now=False)
    texts = run(
        tmp_path,
        "n = 0",
        "outcome = %pragma wait\nprint(outcome.status, outcome.best_iteration, n)\n"
        "print(outcome.usage['work_lost'])",
    )
    assert texts[-1].splitlines()[-2:] == ["succeeded 11 12", "0"], texts
    ran = sorted(int(line) for line in (tmp_path / "runs.log").read_text().split())
    assert ran == list(range(12)), ran
