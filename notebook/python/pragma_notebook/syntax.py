"""A cell's body as Python runs it: IPython's syntax (``%time``, ``!ls``,
``x = !cmd``) turned into calls, as the kernel does. The kernel compiles
a body with it before submitting; a worker runs what it gives."""

import functools


@functools.lru_cache(maxsize=64)
def python_source(body):
    """A body as Python runs it: IPython's syntax (``%time``, ``!ls``,
    ``x = !cmd``) turned into calls, as the kernel does, where IPython is
    installed (once per body: the iterations of an operation share it)."""
    try:
        from IPython.core.inputtransformer2 import TransformerManager
    except ImportError:
        return body
    return TransformerManager().transform_cell(body)
