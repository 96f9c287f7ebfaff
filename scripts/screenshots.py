"""`make screenshots`: the Airflow UI at each step of a manual-approval migration, saved to docs/img/.

It starts the stack the live test uses (tests/live/airflow_stack.py: api-server, scheduler,
dag-processor and triggerer on a throwaway PostgreSQL metadata database, and a local-platform
migration with `cutover.approval: manual`), then drives headless Chromium (Debian package `chromium`)
over the DevTools protocol, logged in by the api-server's bearer token in the `_token` cookie:

- trigger-form.png: the DAG's trigger form (databases, schemas, window, dry run);
- grid-awaiting-approval.png: the run waiting at the gate, with the Required Actions badge;
- approval.png: the approval page with its body (lag, validation, planned steps);
- finished-run.png: the run after the cutover.

The run is triggered and approved over the REST API; the browser only looks.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from contextlib import ExitStack
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
from websockets.sync.client import connect

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "live"))

from airflow_stack import AirflowStack, live_airflow, wait_for  # noqa: E402

from migration.localpg import free_port  # noqa: E402

OUT = ROOT / "docs" / "img"
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync", "--hide-scrollbars", "--force-device-scale-factor=1"]


def say(message: str) -> None:
    print(f"[screenshots] {message}", flush=True)


class Browser:
    """Headless Chromium in its own process group with a fresh profile, driven over one DevTools page."""

    def __init__(self, profile: Path, width: int = 1440, height: int = 900):
        binary = shutil.which("chromium") or "/usr/bin/chromium"
        if not Path(binary).exists():
            raise SystemExit("chromium was not found; on Debian or Ubuntu: apt-get install -y chromium")
        self.width, self.height = width, height
        port = free_port()
        self.log = (profile.parent / "chromium.log").open("ab")
        self.proc = subprocess.Popen(
            [binary, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", f"--remote-debugging-port={port}",
             f"--window-size={width},{height}", "about:blank"],
            stdout=self.log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True)
        page = wait_for("chromium's DevTools endpoint", lambda: self._page_target(port), timeout=60, interval=0.5)
        self._context = ExitStack()
        self.ws = self._context.enter_context(
            connect(page["webSocketDebuggerUrl"], max_size=None, open_timeout=30, ping_interval=None))
        self._id = 0
        self.call("Page.enable")
        self.call("Network.enable")
        self.call("Emulation.setDeviceMetricsOverride", width=width, height=height, deviceScaleFactor=1, mobile=False)

    @staticmethod
    def _page_target(port: int) -> dict[str, Any] | None:
        try:
            targets = httpx.get(f"http://127.0.0.1:{port}/json/list", timeout=2).json()
        except (httpx.HTTPError, ValueError):
            return None
        return next((t for t in targets if t.get("type") == "page"), None)

    def call(self, method: str, **params: Any) -> dict[str, Any]:
        self._id += 1
        self.ws.send(json.dumps({"id": self._id, "method": method, "params": params}))
        while True:  # events arrive in between; the reply carries our id
            message = json.loads(self.ws.recv(timeout=60))
            if message.get("id") == self._id:
                if "error" in message:
                    raise RuntimeError(f"{method}: {message['error']}")
                return message.get("result", {})

    def evaluate(self, expression: str) -> Any:
        result = self.call("Runtime.evaluate", expression=expression, returnByValue=True, awaitPromise=True)
        return result.get("result", {}).get("value")

    def set_cookie(self, name: str, value: str, url: str) -> None:
        self.call("Network.setCookie", name=name, value=value, url=url)

    def open(self, url: str, *, wait_text: str, timeout: float = 60) -> None:
        self.call("Page.navigate", url=url)
        self.wait_text(wait_text, timeout)

    def wait_text(self, text: str, timeout: float = 60) -> None:
        probe = f"document.body !== null && document.body.innerText.includes({json.dumps(text)})"
        wait_for(f"the page to show {text!r}", lambda: self.evaluate(probe), timeout=timeout, interval=0.5)
        time.sleep(2)  # charts, badges and the grid render after the text

    def click(self, text: str, timeout: float = 60) -> None:
        """Click the first visible button or link whose text is ``text`` (waiting for it to render)."""
        script = f"""(() => {{
            const el = [...document.querySelectorAll('button, a')]
                .find(e => e.innerText.trim() === {json.dumps(text)} && e.offsetParent !== null);
            if (el) {{ el.click(); return true; }} return false; }})()"""
        wait_for(f"a visible button or link reading {text!r}", lambda: self.evaluate(script), timeout=timeout,
                 interval=0.5)

    def screenshot(self, path: Path, *, height: int | None = None, whole_page: bool = False) -> None:
        """Save the page as PNG; ``height`` makes the viewport that tall first, ``whole_page`` as tall as the
        tallest scrolling panel's content (at most 4000 px)."""
        if whole_page:
            self._resize(self.height * 2)
            content = self.evaluate("Math.max(...[...document.querySelectorAll('*')].map("
                                    "e => e.scrollHeight - e.clientHeight + window.innerHeight))")
            height = min(4000, int(content or self.height))
        if height:
            self._resize(height)
        data = self.call("Page.captureScreenshot", format="png")["data"]
        path.write_bytes(base64.b64decode(data))
        if height:
            self._resize(self.height)
        say(f"saved {path}")

    def _resize(self, height: int) -> None:
        self.call("Emulation.setDeviceMetricsOverride", width=self.width, height=height, deviceScaleFactor=1,
                  mobile=False)
        time.sleep(1)

    def close(self) -> None:
        try:
            self.call("Browser.close")
        except Exception:  # noqa: BLE001 - the process group is stopped below either way
            pass
        try:
            self._context.close()
        except Exception:  # noqa: BLE001 - the process group is stopped below either way
            pass
        for sig in (signal.SIGTERM, signal.SIGKILL):
            try:
                os.killpg(self.proc.pid, sig)
                self.proc.wait(timeout=10)
                break
            except (ProcessLookupError, subprocess.TimeoutExpired):
                continue
        self.log.close()


def gate_waiting(stack: AirflowStack, dag_id: str, run_id: str) -> bool:
    stack.check_alive()
    state = stack.run(dag_id, run_id)["state"]
    if state not in ("queued", "running"):
        raise RuntimeError(f"run {run_id} ended {state} before the gate")
    return stack.task_instances(dag_id, run_id).get("cutover.approve_cutover", {}).get("state") == "awaiting_input"


def take(stack: AirflowStack, dag_id: str, browser: Browser) -> None:
    base = stack.url
    stack.json("PATCH", f"/api/v2/dags/{dag_id}", json={"is_paused": False})
    browser.set_cookie("_token", stack.token, base)

    browser.open(f"{base}/dags/{dag_id}", wait_text=dag_id)
    browser.click("Trigger")
    browser.wait_text("Dry run")
    browser.screenshot(OUT / "trigger-form.png", height=1120)

    run = stack.trigger(dag_id, {"databases": ["app"], "schemas": ["dms_sample"], "dry_run": False})
    if run.status_code != 200:
        raise RuntimeError(f"trigger: {run.status_code} {run.text[:300]}")
    run_id = run.json()["dag_run_id"]
    say(f"triggered {run_id}; waiting for the gate")
    wait_for("the approval gate", lambda: gate_waiting(stack, dag_id, run_id), timeout=900, interval=2)
    run_path = f"{base}/dags/{dag_id}/runs/{quote(run_id, safe='')}"

    browser.open(run_path, wait_text="Required Action")
    browser.screenshot(OUT / "grid-awaiting-approval.png")

    browser.open(f"{run_path}/tasks/cutover.approve_cutover/required_actions", wait_text="Planned steps")
    browser.screenshot(OUT / "approval.png", whole_page=True)

    gate = next(item["task_instance"] for item in stack.pending_approvals()
                if item["task_instance"]["dag_run_id"] == run_id)
    stack.json("PATCH", f"/api/v2/dags/{dag_id}/dagRuns/{run_id}/taskInstances/{gate['task_id']}/"
                        f"{gate['map_index']}/hitlDetails", json={"chosen_options": ["Approve"], "params_input": {}})
    say("approved over the API; waiting for the run to finish")
    finished = stack.wait_for_run(dag_id, run_id, timeout=900)
    if finished["state"] != "success":
        raise RuntimeError(f"run {run_id} ended {finished['state']}; logs in {stack.home}")
    browser.open(run_path, wait_text="database_moved")
    browser.screenshot(OUT / "finished-run.png")


def main() -> int:
    OUT.mkdir(parents=True, exist_ok=True)
    base = Path(tempfile.mkdtemp(prefix="screenshots-"))
    started = time.monotonic()
    try:
        say(f"starting Airflow and a local migration under {base}")
        with live_airflow(base, cutover={"approval": "manual"}) as live:
            stack, dag_id = live.stack, live.migration.dag_id
            stack.wait_for_dag(dag_id)
            browser = Browser(base / "chromium-profile")
            try:
                take(stack, dag_id, browser)
            finally:
                browser.close()
    finally:
        if not os.environ.get("KEEP_PG"):
            shutil.rmtree(base, ignore_errors=True)
    say(f"done in {time.monotonic() - started:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
