"""IPython's side: ``#pragma`` cells turned into submissions, the
``%pragma`` magics (``%pragma --help`` lists them), DataSphere's
``%state_*`` magics, and the hooks that apply results between cells."""

from __future__ import annotations

import argparse
import re
import shlex
import sys
from collections.abc import Callable
from typing import Any

from . import display
from .errors import DirectiveError, UnsaveableError
from .operations import kernel
from .results import REPORT_STATE_ABOVE, megabytes

# What a directive looks like, whatever its spelling: `# pragma repeat`,
# `#Pragma parallel`, ... (a coverage comment, `# pragma: no cover`, is
# not one).
_DIRECTIVE_LIKE = re.compile(r"^\s*#\s*pragma\s+(repeat|parallel|async)\b", re.IGNORECASE)


def transform(lines: list[str]) -> list[str]:
    """IPython's input transformer: a ``#pragma`` cell becomes its
    submission; a near miss (``# pragma repeat``, a directive below the
    first line) is named and does not run inline."""
    first = next((i for i, line in enumerate(lines) if line.strip()), None)
    if first is None:
        return lines
    if lines[first].lstrip().startswith("#pragma "):
        return [f"__import__('pragma_notebook')._run_cell({''.join(lines)!r})\n"]
    for number, line in enumerate(lines, start=1):
        if _DIRECTIVE_LIKE.match(line):
            return [
                f"__import__('pragma_notebook')._near_miss({line.strip()!r}, {number},"
                f" {number - 1 == first})\n"
            ]
    return lines


def near_miss(line: str, number: int, first: bool) -> None:
    """Says why a line that looks like a directive is not one."""
    if first:
        why = (
            f"`{line}` is not a #pragma directive: write `#pragma` (lowercase, no space after"
            " `#`), then repeat, parallel or async"
        )
    else:
        why = (
            f"line {number}, `{line}`, looks like a #pragma directive, but a directive must be"
            " the cell's first line: move it there"
        )
    print(f"error: {why}; the cell did not run", file=sys.stderr)


def run_cell(cell: str) -> None:
    """Submits a ``#pragma`` cell from IPython and shows its progress."""
    ip = display.ipython()
    try:
        # The cell's number as its prompt shows it (execution_count is
        # the next one's while a cell runs).
        number = getattr(ip.displayhook, "prompt_count", ip.execution_count)
        operation = kernel().submit(cell, ip.user_ns, name=f"In[{number}]")
    except (UnsaveableError, DirectiveError) as error:
        print(f"error: {error}", file=sys.stderr)
        return
    if operation.already_running:
        op = operation.op
        print(
            f"{op}: this cell is running in the background already; nothing new started."
            f" `%pragma wait {op}` waits for it; `%pragma cancel {op}`, then this cell again,"
            " starts it over",
            file=sys.stderr,
        )
        return
    if operation.resumed or not display.in_jupyter():
        # A notebook's panel says it runs; a resume is worth a line.
        verb = "resumed" if operation.resumed else "running"
        print(f"{operation.op}: {verb} in the background; `%pragma wait` waits for it")
    if operation.cost is not None and operation.cost.total > REPORT_STATE_ABOVE:
        print(f"{operation.op}: {operation.cost}")
    display.show_progress(kernel(), operation.op)


class _Stop(Exception):
    """The parser is done: it printed help, or an error it explains."""


class _Parser(argparse.ArgumentParser):
    """argparse that, inside a magic, raises instead of exiting."""

    def exit(self, status=0, message=None):
        if message:
            print(message, file=sys.stderr, end="")
        raise _Stop

    def error(self, message):
        self.print_usage(sys.stderr)
        raise ValueError(f"%{self.prog}: {message}")


def _parser() -> _Parser:
    parser = _Parser(
        prog="pragma",
        description="Follow and settle the background operations of #pragma cells."
        " OP is an operation id (the last operation of this kernel by default).",
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    for name, help_text in (
        ("status", "where this kernel's operations stand (OP: that one)"),
        ("wait", "wait for an operation, then apply its result"),
        ("cancel", "stop an operation; its best so far is kept to apply"),
        ("report", "show the chart of an operation's candidates and scores"),
    ):
        commands.add_parser(name, help=help_text, description=help_text).add_argument(
            "op", nargs="?", metavar="OP"
        )
    extend = commands.add_parser(
        "extend",
        help="run N more iterations of an operation that succeeded",
        description="run N more iterations of an operation that succeeded: a repeat goes on"
        " from its last state, a parallel one runs its next iterations; the best of all is"
        " applied when it ends",
    )
    extend.add_argument("op", nargs="?", metavar="OP")
    extend.add_argument("more", type=int, metavar="N", help="how many more iterations")
    logs = commands.add_parser(
        "logs", help="what the iterations printed", description="what the iterations printed"
    )
    logs.add_argument("op", nargs="?", metavar="OP")
    logs.add_argument("--iteration", metavar="N", help="only this iteration's runs")
    apply = commands.add_parser(
        "apply",
        help="apply what an operation left: conflicts, a kept result, a cancelled best",
        description="apply what an operation left: its conflicts (each variable taking the"
        " operation's value or keeping the notebook's), a result that could not be loaded"
        " before, a cancelled operation's best so far",
    )
    apply.add_argument("op", nargs="?", metavar="OP")
    apply.add_argument(
        "--take-background", nargs="+", default=[], metavar="NAME", help="take its value"
    )
    apply.add_argument(
        "--keep-live", nargs="+", default=[], metavar="NAME", help="keep the notebook's value"
    )
    gc = commands.add_parser(
        "gc",
        help="delete the store's data blobs no state names",
        description="delete the store's data blobs no state names",
    )
    gc.add_argument(
        "--grace",
        type=float,
        default=3600,
        metavar="SECONDS",
        help="keep blobs written or used this recently (3600 by default)",
    )
    exclude = commands.add_parser(
        "exclude",
        help="leave variables out of the saved state",
        description="leave variables out of the saved state (the body does not see them,"
        " nothing overwrites them)",
    )
    exclude.add_argument("names", nargs="+", metavar="NAME")
    config = commands.add_parser(
        "config",
        help="set store, workers, on_conflict, retries, backend, address, progress, ray.NAME",
        description="set KEY=VALUE: store (a directory or s3://BUCKET/PREFIX), workers,"
        " on_conflict (take-background, keep-live, ask), retries, backend (local, ray),"
        " address (the Ray cluster's), progress (widget, text), ray.NAME (a ray.init"
        " argument)",
    )
    config.add_argument("settings", nargs="+", metavar="KEY=VALUE")
    return parser


def pragma_magic(line: str) -> Any:
    """``%pragma COMMAND ...``: see ``%pragma --help``."""
    parser = _parser()
    try:
        args = parser.parse_args(shlex.split(line))
    except _Stop:
        return None
    the = kernel()
    if args.command is None:
        parser.print_usage()
        return None
    if args.command == "status":
        return the.status_table(args.op)
    if args.command == "wait":
        return the.wait(args.op)
    if args.command == "cancel":
        print(the.cancel_and_tell(args.op))
        return None
    if args.command == "report":
        from IPython.display import SVG
        from IPython.display import display as show

        show(SVG(the.report(args.op)))
        return None
    if args.command == "extend":
        operation = the.extend(args.op, args.more)
        print(f"{operation.op}: {args.more} more iterations running in the background")
        display.show_progress(the, operation.op)
        return None
    if args.command == "logs":
        print(the.logs(args.op, args.iteration), end="")
        return None
    if args.command == "apply":
        return the.apply(args.op, take_background=args.take_background, keep_live=args.keep_live)
    if args.command == "gc":
        count, freed = the.collect_garbage(args.grace)
        print(f"deleted {count} data blobs no state names, {megabytes(freed)}")
        return None
    if args.command == "exclude":
        the.exclude(*args.names)
        return None
    if args.command == "config":
        the.config(**the.settings.from_words(args.settings))
        return None
    raise AssertionError(f"a command the parser knows and this does not: {args.command}")


def state_magics() -> dict[str, Callable[[str], None]]:
    """DataSphere's words for what the state leaves out: ``%state_exclude
    NAME...``, ``%state_include NAME...``, ``%state_include_all``,
    ``%state_exclude_ls``; each takes ``--help``."""

    def magic(name: str, description: str, action: Callable[[list[str]], None], names: str):
        parser = _Parser(prog=name, description=description)
        if names:
            parser.add_argument("names", nargs=names, metavar="NAME")

        def run(line: str) -> None:
            try:
                args = parser.parse_args(shlex.split(line))
            except _Stop:
                return
            action(getattr(args, "names", []))

        run.__doc__ = description
        return run

    def listed(_names: list[str]) -> None:
        print(" ".join(sorted(kernel().excluded)) or "(nothing is excluded)")

    return {
        "state_exclude": magic(
            "state_exclude",
            "leave variables out of the saved state (the body does not see them,"
            " nothing overwrites them)",
            lambda names: kernel().exclude(*names),
            names="+",
        ),
        "state_include": magic(
            "state_include",
            "save these excluded variables with the state again (all of them, with no name)",
            lambda names: kernel().include(*names),
            names="*",
        ),
        "state_include_all": magic(
            "state_include_all",
            "save every excluded variable with the state again",
            lambda _names: kernel().include(),
            names="",
        ),
        "state_exclude_ls": magic(
            "state_exclude_ls", "list the variables left out of the state", listed, names=""
        ),
    }


def _pre_run_cell(*args) -> None:
    kernel().cell_running = True


def load_ipython_extension(ip) -> None:
    """``%load_ext pragma_notebook``: ``#pragma`` cells run in the
    background, ``%pragma ...`` controls them."""
    the = kernel()
    if transform not in ip.input_transformers_cleanup:
        ip.input_transformers_cleanup.append(transform)
    ip.register_magic_function(pragma_magic, magic_kind="line", magic_name="pragma")
    for name, magic in state_magics().items():
        ip.register_magic_function(magic, magic_kind="line", magic_name=name)
    if the.settings["progress"] == "widget" and display.widgets_available():
        # Imported now, not in the first #pragma cell (a second there).
        import ipywidgets  # noqa: F401
    ip.events.register("pre_run_cell", _pre_run_cell)
    ip.events.register("post_run_cell", the.apply_finished)
    the.take_up_unfinished(ip)
