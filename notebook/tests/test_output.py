"""Where the workers' output goes, in a real Jupyter kernel: an iteration's
into its logs (what it writes to file descriptors too), a worker's own
outside any iteration into its log, and none of it into the cells."""

import queue
import re
import time

from jupyter_client.manager import start_new_kernel
from kernels import kernel_messages, printed_by, run

NOTE = "import pragma_notebook\nprint(pragma_notebook.kernel().output_note(None))"


def test_what_iterations_write_stays_out_of_the_cells_and_shows_in_their_logs(tmp_path):
    texts = run(
        tmp_path,
        "#pragma repeat --iterations 2 --max-by 1\n"
        "import os, sys, warnings\n"
        'os.write(2, b"fd-level\\n")\n'
        'print("hi", file=sys.stderr)\n'
        'warnings.warn("careful")',
        # A cell the user runs meanwhile, while the iterations write.
        "import time\ntime.sleep(3)",
        "%pragma wait",
        "%pragma logs",
        NOTE,
    )
    logs = texts[3]
    for i, text in enumerate(texts):
        if i != 3:
            assert "fd-level" not in text and "careful" not in text, texts
    for iteration in (0, 1):
        assert f"== iteration {iteration} attempt 1 stderr\n" in logs, logs
    assert "fd-level\n" in logs and "hi\n" in logs and "UserWarning: careful" in logs, logs
    # Python's `warnings` shows a warning once per place: the second
    # iteration may not repeat it. The note counts what the logs hold.
    stderr = "".join(
        part.partition("\n")[2]
        for part in logs.split("== ")
        if re.match(r"iteration \d+ attempt \d+ stderr\n", part)
    )
    lines, warned = len(stderr.splitlines()), stderr.count("UserWarning: careful")
    assert lines >= 5 and warned >= 1, logs
    expected = (
        f"its iterations wrote {lines} lines to stderr ({warned} warning{'s' * (warned > 1)})"
    )
    assert texts[4].startswith(expected) and "`%pragma logs op-" in texts[4], texts
    # The operation's own cell says so, in one line.
    assert f"\n{texts[4].strip()}" in texts[0], texts


def test_a_run_that_writes_only_to_stdout_has_no_note(tmp_path):
    texts = run(
        tmp_path,
        '#pragma parallel --iterations 2 --max-by 1\nimport os\nos.system("echo from a shell")',
        "%pragma wait",
        "%pragma logs",
        NOTE,
    )
    assert "from a shell" not in texts[0] + texts[1], texts
    assert "== iteration 1 attempt 1 stdout\nfrom a shell\n" in texts[2], texts
    assert texts[3].strip() == "None", texts


def test_what_a_worker_writes_outside_iterations_goes_to_its_log(tmp_path):
    # The state holds the module by name: a worker imports it as it loads
    # the state, outside any iteration.
    (tmp_path / "noisy.py").write_text('import os\nos.write(2, b"at import\\n")\nVALUE = 7\n')
    texts = run(
        tmp_path,
        "import noisy",
        "#pragma repeat --iterations 2 --max-by 1\nimport time\ntime.sleep(0.5)\nx = noisy.VALUE",
        "import time\ntime.sleep(3)",
        "outcome = %pragma wait\nprint(outcome.status, x)",
        "%pragma logs",
    )
    # The notebook's own import writes in its own cell, as it would anyway.
    assert all("at import" not in text for text in texts[1:4]), texts
    assert texts[3].strip() == "succeeded 7", texts
    logs = texts[4]
    assert "its iterations printed nothing so far" in logs, logs
    workers = logs.partition("== workers (outside any iteration)\n")[2]
    assert re.match(r"-- worker \d+\nat import\n", workers), logs


def test_a_panel_s_buttons_answer_after_the_page_s_subshell_is_gone(tmp_path):
    # JupyterLab sends a widget's messages on a kernel subshell of the page's
    # and deletes it when the page goes (a reload). ipykernel 7 routes a
    # widget's incoming messages to the subshell its last update was sent
    # under; the panel's updates are sent under a main-shell request, so a
    # click after the page that used a subshell is gone still reaches the
    # kernel. (The operation runs for seconds: it ends after the subshell
    # is gone, and its ending's updates come from the thread that follows
    # it, whose request is then the page's.)
    km, kc = start_new_kernel(kernel_name="python3", cwd=str(tmp_path))
    try:
        kernel_messages(kc, "%load_ext pragma_notebook\na = 0")
        kc.execute(
            "#pragma repeat --iterations 6 --max-by a\nimport time\ntime.sleep(0.5)\na = iteration"
        )
        kernel_messages(kc, "a = 100")  # changed here meanwhile: a conflict
        # A page's request on a subshell of its own, then the page goes.
        subshell = control(kc, "create_subshell_request", {})["subshell_id"]
        on_subshell = kc.session.msg("execute_request", {"code": "1", "silent": False})
        on_subshell["header"]["subshell_id"] = subshell
        kc.shell_channel.send(on_subshell)
        reply = kc.get_shell_msg(timeout=60)
        while reply["parent_header"].get("msg_id") != on_subshell["header"]["msg_id"]:
            reply = kc.get_shell_msg(timeout=60)
        control(kc, "delete_subshell_request", {"subshell_id": subshell})
        # The operation ends; its panel shows the conflict and its buttons.
        take = None
        deadline = time.monotonic() + 120
        while take is None and time.monotonic() < deadline:
            message = kc.get_iopub_msg(timeout=120)
            if message["msg_type"] == "comm_open":
                state = message["content"]["data"].get("state", {})
                if state.get("description") == "take background":
                    take = message["content"]["comm_id"]
        assert take is not None, "no 'take background' button was shown"
        click = kc.session.msg(
            "comm_msg",
            {"comm_id": take, "data": {"method": "custom", "content": {"event": "click"}}},
        )
        kc.shell_channel.send(click)
        deadline = time.monotonic() + 60
        applied = ""
        while "5" not in applied and time.monotonic() < deadline:
            time.sleep(0.3)
            applied = printed_by(kernel_messages(kc, "print(a)")).strip()
        unanswered = []
        while True:
            try:
                shell = kc.get_shell_msg(timeout=0.1)
            except queue.Empty:
                break
            if shell["parent_header"].get("msg_id") == click["header"]["msg_id"]:
                unanswered.append(shell["content"])
    finally:
        kc.stop_channels()
        km.shutdown_kernel(now=True)
    assert not unanswered, unanswered
    assert applied == "5", applied


def control(kc, msg_type, content):
    """Sends a control request; its reply's content."""
    request = kc.session.msg(msg_type, content)
    kc.control_channel.send(request)
    reply = kc.control_channel.get_msg(timeout=30)
    while reply["parent_header"].get("msg_id") != request["header"]["msg_id"]:
        reply = kc.control_channel.get_msg(timeout=30)
    assert reply["content"]["status"] == "ok", reply["content"]
    return reply["content"]
