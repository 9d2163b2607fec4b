"""The product page's own cells, unchanged but for the data (scikit-learn's
bundled 8x8 digits): a Keras model trained one epoch per iteration, the
best checkpoint by test accuracy back in the notebook."""

import os

import pytest
from kernels import run

if not os.environ.get("CI"):
    # Under CI it must run: scripts/python-venv installs tensorflow-cpu.
    pytest.importorskip("keras", reason="tensorflow-cpu is not installed")


def test_the_product_pages_keras_cell_keeps_the_most_accurate_checkpoint(tmp_path):
    texts = run(
        tmp_path,
        "import os\n"
        "os.environ['TF_CPP_MIN_LOG_LEVEL'] = '3'\n"
        "import keras\n"
        "from sklearn.datasets import load_digits\n"
        "from sklearn.model_selection import train_test_split\n"
        "X, y = load_digits(return_X_y=True)\n"
        "x_train, x_test, y_train, y_test = train_test_split(X / 16.0, y, test_size=0.3, "
        "random_state=0)\n"
        "def create_model():\n"
        "    return keras.Sequential([keras.Input((64,)),\n"
        "        keras.layers.Dense(32, activation='relu'),\n"
        "        keras.layers.Dense(10, activation='softmax')])\n"
        "model = create_model()\n"
        "model.compile(optimizer='adam', loss='sparse_categorical_crossentropy', "
        "metrics=['accuracy'])",
        "#pragma repeat --iterations 20 --checkpoint-period 5 "
        '--max-by "model.evaluate(x_test, y_test, verbose=0)[1]"\n'
        "model.fit(x_train, y_train, epochs=1, verbose=0)",
        "outcome = %pragma wait\n"
        "print(outcome.status, outcome.best_iteration in (4, 9, 14, 19))\n"
        "accuracy = model.evaluate(x_test, y_test, verbose=0)[1]\n"
        "print(abs(accuracy - outcome.best_score) < 1e-6, accuracy > 0.8)",
        # The product page's parallel cell: 20 independent runs, at most 5
        # at once, told apart by `var`, which is gone afterwards.
        '#pragma parallel --iterations 20 --parallel-runs 5 --iteration-var "var" '
        '--max-by "model.evaluate(x_test, y_test, verbose=0)[1]"\n'
        "model.fit(x_train, y_train, epochs=1, verbose=0)",
        "outcome = %pragma wait\n"
        "accuracy = model.evaluate(x_test, y_test, verbose=0)[1]\n"
        "print(outcome.status, len(outcome.failed_iterations), 'var' in globals())\n"
        "print(abs(accuracy - outcome.best_score) < 1e-6, outcome.usage['iterations_run'])",
        timeout=600,
    )
    assert texts[2].splitlines() == ["succeeded True", "True True"], texts
    assert texts[4].splitlines() == ["succeeded 0 False", "True 20"], texts


SETUP = (
    "import os\n"
    "os.environ['TF_CPP_MIN_LOG_LEVEL'] = '3'\n"
    "import keras, numpy as np\n"
    "from sklearn.datasets import load_digits\n"
    "X, y = load_digits(return_X_y=True)\n"
    "X = X / 16.0\n"
    "keras.utils.set_random_seed(0)\n"
    "model = keras.Sequential([keras.Input((64,)),\n"
    "    keras.layers.Dense(32, activation='relu'),\n"
    "    keras.layers.Dense(10, activation='softmax')])\n"
    "model.compile(optimizer='adam', loss='sparse_categorical_crossentropy')\n"
)
EPOCH = "model.fit(X, y, epochs=1, verbose=0, shuffle=False, batch_size=64)"


def test_a_keras_model_resumed_from_a_checkpoint_trains_on_as_an_uninterrupted_one(tmp_path):
    # Inline: 6 epochs; and the same, its optimizer's state lost after 4
    # (what a checkpoint without it would give), to tell the two apart.
    inline = run(
        tmp_path,
        SETUP,
        f"for _ in range(6):\n    {EPOCH}\nuninterrupted = [w.copy() for w in model.get_weights()]",
        SETUP,
        f"for _ in range(4):\n    {EPOCH}\n"
        "model.compile(optimizer='adam', loss='sparse_categorical_crossentropy')\n"
        f"for _ in range(2):\n    {EPOCH}\n"
        "fresh = [w.copy() for w in model.get_weights()]\n"
        "np.savez('inline.npz', *uninterrupted)\nnp.savez('fresh.npz', *fresh)",
        timeout=600,
    )
    assert not any("Error" in text for text in inline), inline
    # Under #pragma: the worker dies at the start of iteration 4; the run
    # goes on from the checkpoint after iteration 3, its model unpickled.
    texts = run(
        tmp_path,
        SETUP,
        "#pragma repeat --iterations 6 --checkpoint-period 2 "
        "--max-by 'float(model.optimizer.iterations.numpy())'\n"
        "import os\n"
        "if iteration == 4 and not os.path.exists('killed'):\n"
        "    open('killed', 'w').close()\n"
        "    os.kill(os.getpid(), 9)\n"
        f"{EPOCH}",
        "outcome = %pragma wait\n"
        "print(outcome.status, outcome.best_iteration, outcome.usage['work_lost'])\n"
        "inline = np.load('inline.npz')\nfresh = np.load('fresh.npz')\n"
        "ours = model.get_weights()\n"
        "def close(a, b):\n    return np.allclose(a, b, rtol=1e-5, atol=1e-6)\n"
        "print(all(close(a, b) for a, b in zip(ours, inline.values())))\n"
        "print(any(not close(a, b) for a, b in zip(ours, fresh.values())))",
        timeout=600,
    )
    assert texts[2].splitlines() == ["succeeded 5 1", "True", "True"], texts
