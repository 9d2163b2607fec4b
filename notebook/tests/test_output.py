"""Where the workers' output goes, in a real Jupyter kernel: an iteration's
into its logs (what it writes to file descriptors too), a worker's own
outside any iteration into its log, and none of it into the cells."""

import re

from kernels import run

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
