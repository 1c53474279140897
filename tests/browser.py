"""Open a local HTML file in headless Chromium with the network cut, and report what the page did.

Driven over the Chrome DevTools protocol (CDP) with ``websocket-client``. The network is cut with
``--proxy-server=127.0.0.1:9`` (nothing listens on the discard port) plus a resolver rule that maps every
host to NOTFOUND, so any non-file, non-data request fails and shows up in ``PageCheck.failed``. Chromium is
deliberately *not* run under ``unshare -n``: a fresh network namespace would also hide its loopback DevTools
port from this process. The flags only govern page traffic; our own DevTools connection to 127.0.0.1 is
made outside the browser and is unaffected.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import urllib.parse
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import websocket

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--proxy-server=127.0.0.1:9",
    "--host-resolver-rules=MAP * ~NOTFOUND",
    "--remote-debugging-port=0",
    "--window-size=1400,1800",
]


@dataclass
class PageCheck:
    requests: list[str]  # every URL the page requested, data: URLs excluded
    failed: list[tuple[str, str]]  # (url, errorText) of failed loads, data: URLs excluded
    console_errors: list[str]  # uncaught exceptions, console.error calls and browser-logged errors
    dom: str  # document.documentElement.outerHTML after load + settle time
    images: int  # <img> elements that actually decoded (naturalWidth > 0)
    screenshot: Path | None


def available() -> bool:
    return CHROMIUM is not None


class _Cdp:
    """Minimal CDP session: sends commands and records the events that arrive while waiting for replies."""

    def __init__(self, url: str, deadline: float) -> None:
        self.deadline, self.next_id, self.stage = deadline, 0, "DevTools setup"
        # Own socket so $http_proxy is never consulted; no Origin header, as Chromium rejects foreign ones.
        sock = socket.create_connection(("127.0.0.1", urllib.parse.urlsplit(url).port or 0), timeout=5)
        self.ws = websocket.create_connection(url, socket=sock, timeout=5, suppress_origin=True)
        self.urls: dict[str, str] = {}
        self.requests: list[str] = []
        self.failed: list[tuple[str, str]] = []
        self.errors: list[str] = []
        self.loads = 0

    def _left(self) -> float:
        left = self.deadline - time.monotonic()
        if left <= 0:
            raise RuntimeError(f"headless Chromium timed out waiting for {self.stage}")
        return left

    def _pump(self, timeout: float) -> dict[str, Any] | None:
        """Read one message (None on timeout) and record it if it is an event."""
        self.ws.settimeout(max(0.01, min(timeout, self._left())))
        try:
            msg: dict[str, Any] = json.loads(self.ws.recv())
        except websocket.WebSocketTimeoutException:
            return None
        method, p = msg.get("method"), msg.get("params", {})
        if method == "Network.requestWillBeSent" and not p["request"]["url"].startswith("data:"):
            self.urls[p["requestId"]] = p["request"]["url"]
            self.requests.append(p["request"]["url"])
        elif method == "Network.loadingFailed" and p["requestId"] in self.urls:  # data: URLs were never recorded
            self.failed.append((self.urls[p["requestId"]], p.get("errorText", "")))
        elif method == "Runtime.exceptionThrown":
            d = p["exceptionDetails"]
            self.errors.append(d.get("exception", {}).get("description") or d.get("text", ""))
        elif method == "Runtime.consoleAPICalled" and p["type"] == "error":
            self.errors.append(" ".join(str(a.get("value", a.get("description", ""))) for a in p["args"]))
        elif method == "Log.entryAdded" and p["entry"]["level"] == "error":
            self.errors.append(p["entry"]["text"])
        elif method == "Page.loadEventFired":
            self.loads += 1
        return msg

    def call(self, method: str, **params: Any) -> dict[str, Any]:
        self.next_id += 1
        self.ws.send(json.dumps({"id": self.next_id, "method": method, "params": params}))
        while True:
            msg = self._pump(self._left())
            if msg is not None and msg.get("id") == self.next_id:
                if "error" in msg:
                    raise RuntimeError(f"CDP {method} failed: {msg['error']}")
                return cast(dict[str, Any], msg["result"])

    def eval(self, expr: str) -> Any:
        return self.call("Runtime.evaluate", expression=expr, returnByValue=True)["result"].get("value")

    def until(self, cond: Callable[[], bool], what: str, poll: float = 0.1) -> None:
        self.stage = what
        while not cond():
            self._pump(poll)  # raises once the deadline has passed


def check_page(
    html: Path, screenshot: Path | None = None, *, wait_for: str | None = None, timeout: float = 60, settle: float = 0.5
) -> PageCheck:
    """Load ``html`` offline; optionally wait for CSS selector ``wait_for``; screenshot to ``screenshot`` (PNG)."""
    if CHROMIUM is None:
        raise RuntimeError("chromium is not installed (apt-get install chromium)")
    deadline, uri = time.monotonic() + timeout, Path(html).resolve().as_uri()
    profile = Path(tempfile.mkdtemp(prefix="replab-chromium-"))
    with open(profile / "chromium.log", "wb") as log:  # in the profile dir so rmtree removes it
        # Own process group: Chromium forks zygote/renderer/GPU helpers that must all die with it.
        proc = subprocess.Popen(
            [CHROMIUM, *FLAGS, f"--user-data-dir={profile}", "about:blank"],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=log,
            start_new_session=True,
        )
    cdp: _Cdp | None = None
    try:
        port_file = profile / "DevToolsActivePort"  # written once DevTools listens; line 1 is the port
        while not (port_file.exists() and port_file.read_text().count("\n") >= 1):
            if proc.poll() is not None or time.monotonic() >= deadline:
                tail = (profile / "chromium.log").read_bytes()[-2000:].decode(errors="replace")
                raise RuntimeError(f"headless Chromium did not start (exit {proc.poll()}):\n{tail}")
            time.sleep(0.05)
        port = int(port_file.read_text().split()[0])
        no_proxy = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # ignore any $http_proxy
        with no_proxy.open(f"http://127.0.0.1:{port}/json/list", timeout=5) as r:
            page = next(t for t in json.load(r) if t["type"] == "page")
        cdp = _Cdp(page["webSocketDebuggerUrl"], deadline)
        for domain in ("Network", "Runtime", "Page", "Log"):
            cdp.call(f"{domain}.enable")
        loads = cdp.loads  # about:blank may already have fired its own load event
        nav = cdp.call("Page.navigate", url=uri)
        if "errorText" in nav:
            raise RuntimeError(f"could not open {uri}: {nav['errorText']}")
        cdp.until(lambda: cdp.loads > loads and cdp.eval("document.URL") == uri, f"load of {uri}")
        if wait_for is not None:
            cdp.until(lambda: cdp.eval(f"!!document.querySelector({json.dumps(wait_for)})"), f"selector {wait_for!r}")
        end = time.monotonic() + settle  # let late scripts, fonts and images finish
        cdp.until(lambda: time.monotonic() >= end, "settle, screenshot and DOM")
        if screenshot is not None:
            Path(screenshot).write_bytes(base64.b64decode(cdp.call("Page.captureScreenshot", format="png")["data"]))
        return PageCheck(
            requests=cdp.requests,
            failed=cdp.failed,
            console_errors=cdp.errors,
            dom=cdp.eval("document.documentElement.outerHTML"),
            images=cdp.eval("[...document.images].filter(i => i.complete && i.naturalWidth > 0).length"),
            screenshot=Path(screenshot) if screenshot is not None else None,
        )
    finally:
        if cdp is not None:
            cdp.ws.close()
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
        shutil.rmtree(profile, ignore_errors=True)
