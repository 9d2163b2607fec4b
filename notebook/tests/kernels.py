"""The helpers the tests share: notebooks run in fresh Jupyter kernels
(nbclient), a kernel driven message by message (jupyter_client), what
cells showed. (The shared fixtures are in conftest.py.)"""

import nbformat
from nbclient import NotebookClient


def client_for(tmp_path, cells, timeout=120, allow_errors=False):
    """A client for a notebook of exactly the cells, run in a fresh kernel
    in `tmp_path`."""
    notebook = nbformat.v4.new_notebook()
    notebook.cells = [nbformat.v4.new_code_cell(cell) for cell in cells]
    return NotebookClient(
        notebook,
        timeout=timeout,
        kernel_name="python3",
        allow_errors=allow_errors,
        resources={"metadata": {"path": str(tmp_path)}},
    )


def notebook_client(tmp_path, cells, timeout=120):
    """A client for a notebook of the cells, after `%load_ext`, run in a
    fresh kernel in `tmp_path`."""
    return client_for(tmp_path, ["%load_ext pragma_notebook", *cells], timeout)


def shown(cell):
    """The text a cell printed and displayed, and its error as `Name:
    message`."""
    text = ""
    for output in cell.outputs:
        if output.get("output_type") == "stream":
            text += output["text"]
        elif output.get("output_type") == "error":
            text += f"{output['ename']}: {output['evalue']}\n"
        elif "data" in output:
            if "image/svg+xml" in output["data"]:
                text += "[svg]" + output["data"]["image/svg+xml"]
            else:
                text += output["data"].get("text/plain", "")
    return text


def run_cells(tmp_path, cells, timeout=120, allow_errors=False):
    """Runs exactly the cells in a fresh kernel; the text each printed."""
    client = client_for(tmp_path, cells, timeout, allow_errors)
    client.execute()
    return [shown(cell) for cell in client.nb.cells]


def run(tmp_path, *cells, timeout=120):
    """Runs the cells in a fresh kernel after `%load_ext`; the text each
    printed."""
    return run_cells(tmp_path, ["%load_ext pragma_notebook", *cells], timeout)[1:]


def run_notebook(tmp_path, cells):
    """Runs exactly the cells in a fresh kernel in ``tmp_path``; the text
    each printed, errors allowed (an inline cell may raise)."""
    return run_cells(tmp_path, cells, allow_errors=True)


def kernel_messages(kc, code, timeout=60):
    """Runs `code` through the kernel client; the kernel's messages about it
    until it is idle again."""
    msg_id = kc.execute(code)
    messages = []
    while True:
        message = kc.get_iopub_msg(timeout=timeout)
        if message["parent_header"].get("msg_id") != msg_id:
            continue
        messages.append(message)
        if message["msg_type"] == "status" and message["content"]["execution_state"] == "idle":
            return messages


def printed_by(messages):
    """What the kernel's messages printed, errors included."""
    parts = []
    for message in messages:
        content = message["content"]
        if message["msg_type"] == "stream":
            parts.append(content["text"])
        elif message["msg_type"] == "error":
            parts.append(f"{content['ename']}: {content['evalue']}")
    return "".join(parts)
