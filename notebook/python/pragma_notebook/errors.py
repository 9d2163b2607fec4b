"""What a submission can refuse, before anything runs."""


class UnsaveableError(Exception):
    """Variables of the namespace cannot be saved: the cell did not run."""


class DirectiveError(ValueError):
    """A ``#pragma`` cell that cannot run as written (its directive, its
    code or its selection expression): nothing ran."""
