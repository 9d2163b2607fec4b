"""The notebook host against the same work done inline, in one run.

    target/py-venv/bin/python notebook/benches/bench.py

prints, each a median of a few interleaved rounds:
- the overhead per iteration for a small namespace (ms);
- a 20-iteration repeat of one CPU-bound step each, checkpoint period 5,
  against the same loop inline (target <= 1.15x);
- a 20-iteration repeat of one training step each (scikit-learn's MLP on
  its bundled digits, the data and the model in the namespace),
  checkpoint period 5, against the same loop inline (target <= 1.15x);
- 8 parallel CPU-bound iterations on 2 workers against the same 8 inline,
  one after another (target >= 1.7x faster on 2 cores).
"""

import os
import statistics
import sys
import time
from typing import Any

import pragma_notebook as pn
from scratch import enter_scratch_directory

STEP = "acc = sum(i * i for i in range(2_000_000)) % 97 + iteration"
ROUNDS = 3


def timed(work):
    begin = time.perf_counter()
    work()
    return time.perf_counter() - begin


def background(cell, namespace):
    outcome = pn.submit(cell, namespace).wait()
    assert outcome.status == "succeeded", outcome


def inline(body, iterations):
    namespace = {}
    for iteration in range(iterations):
        namespace["iteration"] = iteration
        exec(body, namespace)


def median_pair(ours, theirs):
    pairs = [(timed(ours), timed(theirs)) for _ in range(ROUNDS)]
    return statistics.median(p[0] for p in pairs), statistics.median(p[1] for p in pairs)


def main():
    enter_scratch_directory("pragma-bench-")
    pn.config(workers=2)
    # Warm the workers (their interpreter start is paid once per kernel).
    background("#pragma parallel --iterations 2 --max-by 1\nx = 1", {})

    n = 40
    ours, theirs = median_pair(
        lambda: background(
            f"#pragma parallel --iterations {n} --parallel-runs 1 --max-by 1\nx = iteration",
            {"a": 1, "b": "text", "c": list(range(100))},
        ),
        lambda: inline("x = iteration", n),
    )
    print(f"overhead per iteration, small namespace: {(ours - theirs) / n * 1000:.1f} ms")

    cell = f"#pragma repeat --iterations 20 --checkpoint-period 5 --max-by acc\n{STEP}"
    ours, theirs = median_pair(lambda: background(cell, {}), lambda: inline(STEP, 20))
    print(
        f"20-iteration repeat, checkpoint period 5: {ours:.2f} s, inline {theirs:.2f} s: "
        f"ratio {ours / theirs:.2f} (target <= 1.15)"
    )

    setup = (
        "from sklearn.datasets import load_digits\n"
        "from sklearn.neural_network import MLPClassifier\n"
        "import numpy as np\n"
        "X, y = load_digits(return_X_y=True)\n"
        "model = MLPClassifier(hidden_layer_sizes=(256,), random_state=0)\n"
        "classes = np.unique(y)\n"
    )
    train = "model.partial_fit(X, y, classes=classes)"

    def trained_inline():
        namespace: dict[str, Any] = {}
        exec(setup, namespace)
        for iteration in range(20):
            namespace["iteration"] = iteration
            exec(train, namespace)

    def trained_here():
        namespace: dict[str, Any] = {}
        exec(setup, namespace)
        background(
            "#pragma repeat --iterations 20 --checkpoint-period 5 "
            f'--max-by "model.score(X, y)"\n{train}',
            namespace,
        )

    ours, theirs = median_pair(trained_here, trained_inline)
    print(
        f"20-iteration repeat of a training step (MLP on digits), checkpoint period 5: "
        f"{ours:.2f} s, inline {theirs:.2f} s: ratio {ours / theirs:.2f} (target <= 1.15)"
    )

    cell = f"#pragma parallel --iterations 8 --parallel-runs 2 --max-by acc\n{STEP}"
    ours, theirs = median_pair(lambda: background(cell, {}), lambda: inline(STEP, 8))
    print(
        f"8 parallel iterations on 2 workers: {ours:.2f} s, inline one after another "
        f"{theirs:.2f} s: {theirs / ours:.2f}x faster (target >= 1.7, {os.cpu_count()} cores)"
    )
    sys.stdout.flush()


if __name__ == "__main__":
    main()
