"""pragma for notebooks: ``#pragma repeat|parallel|async`` cells on the
notebook's Python variables.

This package holds the worker interpreters the Rust host runs iterations
in (``pragma_notebook.worker``); the IPython extension and the magics build
on it.
"""
