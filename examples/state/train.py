"""A small logistic-regression model in Python's standard library.

    python3 train.py --epoch [--lr LR]   train one epoch, saving model.json
    python3 train.py --accuracy          print the accuracy on held-out data

The data are two overlapping clouds of points, the same on every run.
"""
import json
import math
import os
import random
import sys


def dataset():
    rng = random.Random(42)
    points = []
    for _ in range(600):
        label = rng.random() < 0.5
        cx, cy = (1.0, 1.0) if label else (-1.0, -0.5)
        points.append((rng.gauss(cx, 1.3), rng.gauss(cy, 1.3), 1 if label else 0))
    return points[:400], points[400:]


def load():
    if os.path.exists("model.json"):
        with open("model.json") as f:
            return json.load(f)
    return {"w": [0.0, 0.0], "b": 0.0, "epochs": 0}


def predict(model, x, y):
    z = model["w"][0] * x + model["w"][1] * y + model["b"]
    return 1.0 / (1.0 + math.exp(-max(-30.0, min(30.0, z))))


def epoch(model, lr):
    train, _ = dataset()
    order = list(range(len(train)))
    random.Random(int(os.environ.get("PRAGMA_SEED", "0")) % 2**32).shuffle(order)
    for i in order:
        x, y, label = train[i]
        error = predict(model, x, y) - label
        model["w"][0] -= lr * error * x
        model["w"][1] -= lr * error * y
        model["b"] -= lr * error
    model["epochs"] += 1


def accuracy(model):
    _, held_out = dataset()
    right = sum((predict(model, x, y) >= 0.5) == (label == 1) for x, y, label in held_out)
    return right / len(held_out)


if __name__ == "__main__":
    model = load()
    if "--accuracy" in sys.argv:
        print(f"{accuracy(model):.4f}")
        sys.exit(0)
    lr = float(sys.argv[sys.argv.index("--lr") + 1]) if "--lr" in sys.argv else 0.002
    epoch(model, lr)
    with open("model.json.tmp", "w") as f:
        json.dump(model, f)
    os.replace("model.json.tmp", "model.json")
