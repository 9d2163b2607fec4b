"""The browser tests' harness: a JupyterLab server on 127.0.0.1 whose
config, runtime, data and settings directories are the test's own, and a
page of it in Debian's headless Chromium driven by Selenium.

Selenium never downloads a browser or a driver here: the driver is
/usr/bin/chromedriver and the browser /usr/bin/chromium (Debian's
`chromium chromium-driver`, which .ci/run installs), both given, so
Selenium Manager is not run (and SE_OFFLINE keeps it offline if it were).

The page is driven through JupyterLab's own application object,
`window.jupyterapp`, which the server exposes (`LabApp.expose_app_in_browser`,
what JupyterLab's own browser tests, Galata, use): the notebook's widgets
and models say what is loaded, selected, running and saved without guessing
from CSS classes, and a cell's source is set in the notebook's shared model,
as opening a file does. Typing code into CodeMirror 6 with send_keys is not
used: its auto-closed brackets and quotes and its auto-indent after `:`
and newlines make the cell hold something else than what was typed. Keys
are sent only where a user's keys are what is tested: Ctrl+Enter runs a
cell (Shift+Enter on the last cell would add one), Ctrl+S saves."""

from __future__ import annotations

import contextlib
import json
import os
import re
import secrets
import shutil
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import quote

import nbformat
import pytest
from selenium import webdriver
from selenium.common.exceptions import TimeoutException, WebDriverException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.action_chains import ActionChains
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.remote.webelement import WebElement

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
    "--window-size=1400,1000",
]
REPO = Path(__file__).resolve().parents[2]
# The screenshots and logs of each test, kept after it (target/ is ignored
# by git; CI may keep them as artifacts).
ARTIFACTS = REPO / "target" / "browser-artifacts"

T = TypeVar("T")


def require_chromium() -> None:
    """Skips the test without Debian's Chromium and its driver, except under
    CI, where .ci/run installs them: there it fails."""
    missing = [str(path) for path in (CHROMIUM, CHROMEDRIVER) if not os.access(path, os.X_OK)]
    if missing:
        assert not os.environ.get("CI"), (
            f"under CI .ci/run installs chromium chromium-driver; missing {', '.join(missing)}"
        )
        pytest.skip(f"no {', '.join(missing)} (apt-get install chromium chromium-driver)")


def write_notebook(path: Path, cells: list[str]) -> Path:
    """A notebook of the code cells, with the python3 kernelspec, so that
    JupyterLab opens it with that kernel and asks for none."""
    notebook = nbformat.v4.new_notebook()
    notebook.metadata["kernelspec"] = {
        "name": "python3",
        "display_name": "Python 3 (ipykernel)",
        "language": "python",
    }
    notebook.metadata["language_info"] = {"name": "python"}
    notebook.cells = [nbformat.v4.new_code_cell(cell) for cell in cells]
    nbformat.write(notebook, str(path))
    return path


def wait_until(what: str, probe: Callable[[], T | None], timeout: float, every=0.2) -> T:
    """The first true value `probe` returns, tried every `every` seconds;
    a TimeoutError naming `what` and the last value after `timeout`."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while True:
        last = probe()
        if last:
            return last
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what}: not after {timeout}s (last: {last!r})")
        time.sleep(every)


@dataclass
class Lab:
    """A running JupyterLab: its base URL (ending in /), token and root."""

    url: str
    token: str
    root: Path
    log: Path

    def api(self, method: str, path: str, timeout=10.0) -> Any:
        """The JSON answer of the server's REST API."""
        request = urllib.request.Request(
            self.url + path,
            method=method,
            data=b"" if method != "GET" else None,
            headers={"Authorization": f"token {self.token}"},
        )
        with urllib.request.urlopen(request, timeout=timeout) as answer:  # noqa: S310 - our server
            body = answer.read()
        return json.loads(body) if body else None


def _processes() -> dict[int, tuple[int, str]]:
    """Every process's parent and start time (/proc; none elsewhere)."""
    found = {}
    for entry in Path("/proc").glob("[0-9]*"):
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        # The fields after the command name, which is in parentheses.
        fields = stat[stat.rindex(")") + 2 :].split()
        found[int(entry.name)] = (int(fields[1]), fields[19])
    return found


def _descendants(pid: int) -> list[tuple[int, str]]:
    """The processes under `pid` (its kernels and what they started), each
    with its start time, to tell it from a later process with its pid."""
    table = _processes()
    children: dict[int, list[int]] = {}
    for child, (parent, _) in table.items():
        children.setdefault(parent, []).append(child)
    found, stack = [], list(children.get(pid, []))
    while stack:
        child = stack.pop()
        found.append((child, table[child][1]))
        stack.extend(children.get(child, []))
    return found


def _kill_survivors(processes: list[tuple[int, str]]) -> None:
    """SIGKILL to those of the processes still running (same pid and start
    time)."""
    table = _processes()
    for pid, started in processes:
        if pid in table and table[pid][1] == started:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


def _settings(settings_dir: Path) -> None:
    """User settings that keep the page plain: no news or update prompt over
    it, and every cell in the page (not only those in view), so that what a
    cell shows can be read wherever it is."""
    settings = {
        "@jupyterlab/apputils-extension/notification": {
            "fetchNews": "false",
            "checkForUpdates": False,
        },
        "@jupyterlab/notebook-extension/tracker": {"windowingMode": "none"},
    }
    for plugin, values in settings.items():
        path = settings_dir / f"{plugin}.jupyterlab-settings"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(values))


@contextlib.contextmanager
def jupyterlab(tmp_path: Path, log: Path | None = None, timeout=90.0) -> Iterator[Lab]:
    """A JupyterLab server on 127.0.0.1 serving `tmp_path/root`, its Jupyter
    and IPython directories in `tmp_path` (nothing in ~/.jupyter), its
    output in `log`; stopped at the end, with its kernels and what they
    started, however the block ends."""
    root = tmp_path / "root"
    home = tmp_path / "jupyter"
    root.mkdir(parents=True, exist_ok=True)
    dirs = {
        "JUPYTER_CONFIG_DIR": home / "config",
        "JUPYTER_RUNTIME_DIR": home / "runtime",
        "JUPYTER_DATA_DIR": home / "data",
        "JUPYTERLAB_SETTINGS_DIR": home / "lab-settings",
        "JUPYTERLAB_WORKSPACES_DIR": home / "lab-workspaces",
        "IPYTHONDIR": home / "ipython",
    }
    for path in dirs.values():
        path.mkdir(parents=True, exist_ok=True)
    _settings(dirs["JUPYTERLAB_SETTINGS_DIR"])
    env = {**os.environ, **{name: str(path) for name, path in dirs.items()}}
    env.pop("JUPYTER_PLATFORM_DIRS", None)
    token = secrets.token_hex(24)
    log = log or tmp_path / "jupyterlab.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    command = [
        # The tests' Python (target/py-venv's), where the test extra put
        # JupyterLab, ipykernel and the package.
        sys.executable,
        "-m",
        "jupyter",
        "lab",
        "--no-browser",
        "--ServerApp.ip=127.0.0.1",
        # A free port is the server's choice, read from its info file: no
        # race with another test picking the same port.
        "--ServerApp.port=0",
        "--ServerApp.port_retries=0",
        f"--IdentityProvider.token={token}",
        f"--ServerApp.root_dir={root}",
        "--ServerApp.terminals_enabled=False",
        # No announcements fetched, no update check: no prompt over the page.
        "--LabApp.news_url=None",
        "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate",
        # Nor is PyPI asked for extensions.
        "--LabApp.extension_manager=readonly",
        "--LabApp.expose_app_in_browser=True",
    ]
    if os.geteuid() == 0:
        # CI's containers run as root.
        command.append("--allow-root")
    with open(log, "wb") as output:
        server = subprocess.Popen(
            command,
            cwd=root,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=output,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    lab: Lab | None = None
    try:

        def answering() -> Lab | None:
            if server.poll() is not None:
                tail = log.read_text(errors="replace")[-3000:]
                raise RuntimeError(f"JupyterLab exited ({server.returncode}):\n{tail}")
            for info_file in dirs["JUPYTER_RUNTIME_DIR"].glob("jpserver-*.json"):
                with contextlib.suppress(OSError, ValueError):
                    info = json.loads(info_file.read_text())
                    candidate = Lab(info["url"], token, root, log)
                    with contextlib.suppress(OSError):
                        if candidate.api("GET", "api/status", timeout=2):
                            return candidate
            return None

        lab = wait_until("JupyterLab answers", answering, timeout, every=0.3)
        yield lab
    finally:
        under = _descendants(server.pid)
        if lab is not None and server.poll() is None:
            # Shuts its kernels down, then stops.
            with contextlib.suppress(OSError):
                lab.api("POST", "api/shutdown", timeout=20)
        for stop in (signal.SIGTERM, signal.SIGKILL):
            try:
                server.wait(timeout=20)
                break
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(server.pid, stop)
        server.wait()
        _kill_survivors(under + _descendants(server.pid))


@contextlib.contextmanager
def chromium(profile: Path, log: Path | None = None) -> Iterator[webdriver.Chrome]:
    """Debian's headless Chromium under its chromedriver, its profile in
    `profile`, the driver's output in `log`; quit at the end."""
    require_chromium()
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in [*CHROMIUM_FLAGS, f"--user-data-dir={profile}"]:
        options.add_argument(flag)
    # Leaving a notebook changed since it was saved (a progress display
    # updated after the save) may ask "Leave site?": the answer is yes.
    options.unhandled_prompt_behavior = "accept"
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    service = Service(
        executable_path=str(CHROMEDRIVER),
        log_output=str(log) if log else subprocess.DEVNULL,
    )
    with pytest.MonkeyPatch.context() as patch:
        # Were Selenium Manager run, it would not go online.
        patch.setenv("SE_OFFLINE", "true")
        driver = webdriver.Chrome(service=service, options=options)
    try:
        driver.set_script_timeout(30)
        yield driver
    finally:
        driver.quit()


# The notebook panel of `path` (the first argument), or null: the JS
# functions below start with it.
_PANEL = """
const app = window.jupyterapp;
let panel = null;
if (app && app.shell) {
  for (const widget of app.shell.widgets('main')) {
    if (widget.content && widget.context && widget.context.path === arguments[0]
        && widget.sessionContext) {
      panel = widget;
    }
  }
}
"""


class Page:
    """A JupyterLab page in the browser, showing one notebook: its cells are
    counted from 0, in the order the notebook shows them."""

    def __init__(self, driver: webdriver.Chrome, lab: Lab, artifacts: Path):
        self.driver = driver
        self.lab = lab
        self.artifacts = artifacts
        self.path: str | None = None
        self.shots = 0

    # What the page says.

    def js(self, body: str, *args: Any) -> Any:
        """Runs `body` in the page after `_PANEL`, with the notebook's path
        as `arguments[0]` and `args` after it."""
        return self.driver.execute_script(_PANEL + body, self.path, *args)

    def state(self) -> str:
        """Where the notebook is: `no app`, `no notebook`, `loading`, `no
        kernel`, or its kernel's status and connection (`idle/connected`)."""
        return self.js(
            """
            if (!window.jupyterapp) return 'no app';
            if (!panel) return 'no notebook';
            if (!panel.context.isReady || !panel.content.model) return 'loading';
            const kernel = panel.sessionContext.session && panel.sessionContext.session.kernel;
            if (!kernel) return 'no kernel';
            return kernel.status + '/' + kernel.connectionStatus;
            """
        )

    def cell(self, index: int) -> WebElement:
        """The cell's element."""
        return wait_until(
            f"cell {index}",
            lambda: self.js(
                "const cell = panel && panel.content.widgets[arguments[1]];"
                "return cell ? cell.node : null;",
                index,
            ),
            10,
        )

    def cell_count(self) -> int:
        return self.js("return panel ? panel.content.widgets.length : 0;")

    def cell_source(self, index: int) -> str:
        """The source the cell holds."""
        return self.js(
            "return panel.content.widgets[arguments[1]].model.sharedModel.source;", index
        )

    def prompt(self, index: int) -> str:
        """The cell's input prompt as shown: `[ ]:`, `[*]:`, `[3]:`."""
        return self.js(
            "const prompt = panel.content.widgets[arguments[1]].node"
            "  .querySelector('.jp-InputPrompt');"
            "return prompt ? prompt.innerText.trim() : '';",
            index,
        )

    def cell_output_text(self, index: int) -> str:
        """The visible text of the cell's output area."""
        return self.js(
            "const area = panel.content.widgets[arguments[1]].node"
            "  .querySelector('.jp-Cell-outputArea');"
            "return area ? area.innerText : '';",
            index,
        )

    def progress_text(self, index: int) -> str:
        """What the cell's output shows of progress: the text of its widgets
        (HTML, labels, readouts) and how full its progress bars are, as
        `[progress 37.5%]`, a line each; its output's text if it shows no
        widget."""
        return self.js(
            """
            const area = panel.content.widgets[arguments[1]].node
              .querySelector('.jp-Cell-outputArea');
            if (!area) return '';
            const outer = [];
            const found = area.querySelectorAll(
              ['.widget-html', '.widget-label', '.widget-readout', '.widget-hprogress',
               '.widget-vprogress', 'progress']
                .map(kind => '.jp-OutputArea-output ' + kind).join(', '));
            for (const widget of found) {
              if (!outer.some(other => other.contains(widget))) outer.push(widget);
            }
            const parts = [];
            for (const widget of outer) {
              if (widget.tagName === 'PROGRESS') {
                parts.push(`[progress ${widget.value}/${widget.max}]`);
                continue;
              }
              const text = widget.innerText.trim();
              if (text) parts.push(text);
              const bar = widget.querySelector('.progress-bar');
              if (bar) parts.push(`[progress ${bar.style.width || bar.style.height || '?'}]`);
            }
            return parts.length ? parts.join('\\n') : area.innerText;
            """,
            index,
        )

    def wait_for_text(self, index: int, substring: str, timeout=60.0) -> str:
        """The cell's output text once it holds `substring`."""
        return wait_until(
            f"cell {index} showing {substring!r}",
            lambda: (lambda text: text if substring in text else None)(
                self.cell_output_text(index)
            ),
            timeout,
        )

    def wait_for_progress(self, index: int, pattern: str, unlike="", timeout=60.0) -> str:
        """The cell's progress text once it matches the regex `pattern` (and
        differs from `unlike`: an update)."""

        def shown():
            text = self.progress_text(index)
            return text if re.search(pattern, text) and text != unlike else None

        return wait_until(f"cell {index} progress matching {pattern!r}", shown, timeout)

    # What is done to it.

    def open(self, name: str, timeout=90.0) -> None:
        """Opens the notebook `name` (in the server's root) and waits until
        it is shown with its kernel idle."""
        self.path = name
        self.driver.get(f"{self.lab.url}lab/tree/{quote(name)}?token={self.lab.token}")
        self.wait_idle(timeout)

    def reload(self, timeout=90.0) -> None:
        """The browser's reload; then waits until the notebook is back, its
        kernel (the same one: its session outlives the page) idle."""
        self.driver.refresh()
        self.wait_idle(timeout)

    def wait_idle(self, timeout=60.0) -> None:
        """Waits until the notebook is shown, its kernel idle and connected,
        and no cell waits to run (`[*]`)."""

        def idle():
            state = self.state()
            if state != "idle/connected":
                return None
            prompts = self.js(
                "return panel.content.widgets.map(cell => {"
                "  const prompt = cell.node.querySelector('.jp-InputPrompt');"
                "  return prompt ? prompt.innerText : ''; });"
            )
            return not any("*" in prompt for prompt in prompts)

        try:
            wait_until(f"{self.path} shown, its kernel idle", idle, timeout)
        except TimeoutError as error:
            raise TimeoutError(f"{error} (page: {self.state()})") from None

    def run_cell_at(self, index: int, timeout=60.0) -> str:
        """Runs the cell as a user does: selects it (command mode) and
        presses Ctrl+Enter; waits until it has run (a new execution count
        in its prompt); its output text. Ctrl+Enter, not Shift+Enter: run
        on the last cell, Shift+Enter adds a cell after it, and the notebook
        would no longer hold only what the test put in it."""
        self.cell(index)
        before = self.prompt(index)
        self.js(
            """
            const notebook = panel.content;
            notebook.mode = 'command';
            notebook.activeCellIndex = arguments[1];
            notebook.deselectAll();
            notebook.activeCell.node.scrollIntoView({block: 'center'});
            notebook.node.focus();
            """,
            index,
        )
        ActionChains(self.driver).key_down(Keys.CONTROL).send_keys(Keys.ENTER).key_up(
            Keys.CONTROL
        ).perform()

        def ran():
            prompt = self.prompt(index)
            return prompt != before and re.fullmatch(r"\[\d+\]:", prompt)

        wait_until(f"cell {index} run (prompt was {before!r})", ran, timeout)
        return self.cell_output_text(index)

    def run_cell(self, code: str, timeout=60.0) -> int:
        """Adds a code cell of `code` at the end and runs it; its index. The
        source is set in the notebook's model, not typed (see the module's
        docstring)."""
        index = self.js(
            """
            const model = panel.content.model;
            model.sharedModel.insertCell(model.cells.length,
              {cell_type: 'code', source: arguments[1]});
            return model.cells.length - 1;
            """,
            code,
        )
        wait_until(f"cell {index} added", lambda: self.cell_count() > index, 10)
        self.run_cell_at(index, timeout)
        return index

    def save(self, timeout=30.0) -> None:
        """Saves the notebook with Ctrl+S; waits until the file is
        written."""
        written = "return panel.context.contentsModel && panel.context.contentsModel.last_modified;"
        before = self.js(written)
        self.js("panel.content.node.focus();")
        ActionChains(self.driver).key_down(Keys.CONTROL).send_keys("s").key_up(
            Keys.CONTROL
        ).perform()
        wait_until("the notebook saved", lambda: self.js(written) != before, timeout)

    def click_button_in_cell(self, index: int, label: str) -> None:
        """Clicks the button in the cell's output whose text, title or
        aria-label is `label` (a widget's button)."""

        def button():
            for candidate in self.cell(index).find_elements(By.CSS_SELECTOR, "button"):
                names = {
                    candidate.text.strip(),
                    candidate.get_attribute("title"),
                    candidate.get_attribute("aria-label"),
                }
                if label in names and candidate.is_displayed() and candidate.is_enabled():
                    return candidate
            return None

        element = wait_until(f"a {label!r} button in cell {index}", button, 30)
        self.driver.execute_script("arguments[0].scrollIntoView({block: 'center'});", element)
        element.click()

    def screenshot(self, name: str) -> Path:
        """Saves the window as `NN-name.png` in the test's artifacts, NN the
        screenshots taken so far."""
        self.shots += 1
        self.artifacts.mkdir(parents=True, exist_ok=True)
        slug = re.sub(r"[^A-Za-z0-9_.-]+", "-", name).strip("-")
        path = self.artifacts / f"{self.shots:02d}-{slug}.png"
        self.driver.save_screenshot(str(path))
        return path

    def keep_console(self) -> None:
        """Writes the browser console's messages so far to console.log in the
        test's artifacts."""
        with contextlib.suppress(WebDriverException):
            messages = self.driver.get_log("browser")
            self.artifacts.mkdir(parents=True, exist_ok=True)
            with open(self.artifacts / "console.log", "a") as out:
                for message in messages:
                    out.write(f"{message.get('level')} {message.get('message')}\n")

    def close(self) -> None:
        """Leaves the notebook: the page goes blank, JupyterLab forgets its
        layout (which would open this notebook again in the next test's
        page), and its kernels are shut down."""
        with contextlib.suppress(WebDriverException, TimeoutException):
            self.driver.get("about:blank")
        with contextlib.suppress(urllib.error.HTTPError):
            self.lab.api("DELETE", "lab/api/workspaces/default")
        for session in self.lab.api("GET", "api/sessions"):
            with contextlib.suppress(OSError):
                self.lab.api("DELETE", f"api/sessions/{session['id']}", timeout=30)


def artifacts_for(test_name: str) -> Path:
    """The test's artifact directory, emptied."""
    path = ARTIFACTS / re.sub(r"[^A-Za-z0-9_.-]+", "-", test_name)
    shutil.rmtree(path, ignore_errors=True)
    path.mkdir(parents=True)
    return path
