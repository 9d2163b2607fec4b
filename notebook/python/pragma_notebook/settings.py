"""The kernel's settings (``%pragma config``, :func:`pragma_notebook.config`):
their defaults, what each may be, and how ``KEY=VALUE`` words read."""

from __future__ import annotations

import ast
import os
from typing import Any

# Settings the native session is built with: changing one makes a new one.
SESSION_SETTINGS = ("store", "workers", "backend", "address", "ray", "retries")

CONFLICT_RULES = ("take-background", "keep-live", "ask")


class Settings:
    """One kernel's settings, checked as they are set."""

    def __init__(self):
        self.values: dict[str, Any] = {
            "store": ".pragma",
            "workers": os.cpu_count() or 1,
            "on_conflict": "ask",
            # An exception the body raises is the user's code failing: run
            # once, as inline (a lost worker is a preemption, with its own
            # budget).
            "retries": 0,
            # From the kernel's environment, so that a restarted kernel
            # takes its unfinished operations up on the same cluster
            # (`address` None: ray.init reads RAY_ADDRESS).
            "backend": os.environ.get("PRAGMA_BACKEND", "local"),
            "address": None,
            "ray": {},
            # How an operation's cell shows it: a live widget (ipywidgets,
            # where installed) or a text line.
            "progress": os.environ.get("PRAGMA_PROGRESS", "widget"),
        }
        # Whether `workers` was set (with Ray, the cluster's CPUs otherwise).
        self.workers_set = False

    def __getitem__(self, key: str) -> Any:
        return self.values[key]

    def check(self, key: str, value: Any) -> None:
        """Raises ``ValueError`` saying what to write if ``value`` cannot be
        the setting ``key``."""
        if key not in self.values:
            raise ValueError(f"unknown setting `{key}`: use one of {', '.join(self.values)}")
        if key == "on_conflict" and value not in CONFLICT_RULES:
            raise ValueError(f"on_conflict `{value}`: use take-background, keep-live or ask")
        if key == "backend" and value not in ("local", "ray"):
            raise ValueError(f"backend `{value}`: use local or ray")
        if key == "progress" and value not in ("widget", "text"):
            raise ValueError(f"progress `{value}`: use widget or text")
        if key == "retries" and not (str(value).isdigit()):
            raise ValueError(f"retries `{value}`: give a whole number, 0 or more")
        if key == "ray" and not isinstance(value, dict):
            raise ValueError(f"ray `{value!r}`: give a dict of ray.init arguments")

    def set(self, key: str, value: Any) -> None:
        """Sets ``key`` (checked first)."""
        self.check(key, value)
        self.values[key] = value
        if key == "workers":
            self.workers_set = True

    def store(self) -> str:
        """The store: a directory taken where the kernel is now, or a URL as
        it is."""
        store = str(self.values["store"])
        return store if is_bucket(store) else os.path.abspath(store)

    def from_words(self, words: list[str]) -> dict[str, Any]:
        """``KEY=VALUE`` words as settings; ``ray.NAME=VALUE`` ones gather
        into the ``ray`` dict, each value read as a Python literal where it
        is one (``ray.log_to_driver=True``, ``ray.runtime_env={...}``)."""
        settings: dict[str, Any] = {}
        ray_options: dict[str, Any] = {}
        for word in words:
            if "=" not in word:
                raise ValueError(f"`{word}`: write settings as KEY=VALUE")
            key, value = word.split("=", 1)
            if key.startswith("ray."):
                try:
                    ray_options[key[4:]] = ast.literal_eval(value)
                except (ValueError, SyntaxError):
                    ray_options[key[4:]] = value
            else:
                settings[key] = value
        if ray_options:
            settings["ray"] = {**self.values["ray"], **ray_options}
        return settings


def is_bucket(store: str) -> bool:
    """Whether a store is a bucket URL (``s3://BUCKET/PREFIX``), not a
    directory."""
    return "://" in store
