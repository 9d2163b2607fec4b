"""The stop rules in a real kernel: ``--patience`` ends a repeat whose score
stopped improving, ``--target`` a parallel search that reached its score;
each applies its best so far and says why it stopped."""

from kernels import run_notebook


def test_a_repeat_out_of_patience_applies_its_best_and_says_why(tmp_path):
    runs = tmp_path / "runs"
    texts = run_notebook(
        tmp_path,
        [
            "%load_ext pragma_notebook",
            f"runs = {str(runs)!r}\nw = 0.0",
            # The score climbs to 3 at iteration 2, then falls.
            "#pragma repeat --iterations 40 --patience 2 --max-by score\n"
            "open(runs, 'a').write('run\\n')\n"
            "w = w + 1\n"
            "score = w if iteration <= 2 else -w",
            "outcome = %pragma wait\n"
            "print(outcome.status, outcome.best_iteration, w, score)\n"
            "print(outcome.stopped_early)",
        ],
    )
    status, reason = texts[3].strip().splitlines()[-2:]
    # The best state is iteration 2's: w and score as it left them.
    assert status == "succeeded 2 3.0 3.0", texts
    assert reason == "no better score in 2 checkpoints after iteration 2 (`--patience`)", texts
    # Iterations 0 to 4 ran, not 40.
    assert runs.read_text().count("run") == 5
    # The cell's own ending says it too.
    assert f"stopped early: {reason}" in texts[2], texts


def test_a_parallel_search_stops_once_an_iteration_reaches_the_target(tmp_path):
    runs = tmp_path / "runs"
    texts = run_notebook(
        tmp_path,
        [
            "%load_ext pragma_notebook\n%pragma config workers=2",
            f"runs = {str(runs)!r}",
            "#pragma parallel --iterations 60 --target 3 --min-by loss\n"
            "import time\n"
            "open(runs, 'a').write(f'{iteration}\\n')\n"
            "time.sleep(0.2)\n"
            "loss = 10 - iteration",
            "outcome = %pragma wait\n"
            "print(outcome.status, loss <= 3, outcome.usage['iterations_run'] < 20)\n"
            "print(outcome.stopped_early)",
        ],
    )
    status, reason = texts[3].strip().splitlines()[-2:]
    assert status == "succeeded True True", texts
    assert reason.endswith("reaching the target 3 (`--target`)"), texts
    started = runs.read_text().split()
    assert len(started) < 20, started
