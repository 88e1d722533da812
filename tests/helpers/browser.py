"""A real browser for the tests: Debian's headless chromium, driven through the Chrome DevTools
Protocol over a pipe (``--remote-debugging-pipe``: the browser reads commands on its fd 3 and
writes replies and events on its fd 4, each a JSON message ending in a NUL byte). Standard
library only.

    with Browser() as b:
        b.open("file:///.../index.html")      # waits for the load event
        b.evaluate("document.title")
        b.screenshot(path)
        assert b.errors == []                   # console errors, exceptions, CSP violations
"""

from __future__ import annotations

import base64
import fcntl
import json
import os
import select
import shutil
import subprocess
import tempfile
import time

import pytest

CHROMIUM = "/usr/bin/chromium"
#: the longest the browser may take to start, load a page or answer a command
TIMEOUT = 30.0


def require_chromium() -> str:
    """The browser's path. Where it is absent the test skips, saying why; under $CI it fails:
    CI must never skip the browser tests silently (.ci/run installs chromium)."""
    if os.access(CHROMIUM, os.X_OK):
        return CHROMIUM
    reason = f"{CHROMIUM} is absent: apt-get install -y --no-install-recommends chromium"
    if os.environ.get("CI"):
        pytest.fail(f"{reason} ($CI is set: the browser tests may not be skipped)", pytrace=False)
    pytest.skip(reason)


class BrowserError(AssertionError):
    """The browser answered a command with an error, or did not answer in time."""


class Browser:
    """One headless chromium with one page; ``errors`` collects what the page reported as errors."""

    def __init__(self, width: int = 1400, height: int = 1000):
        self.width, self.height = width, height
        self.errors: list[str] = []
        self.events: list[dict] = []
        self._buffer = b""
        self._id = 0
        self._session: str | None = None

    def __enter__(self) -> Browser:
        binary = require_chromium()
        self._profile = tempfile.mkdtemp(prefix="runjournal-chromium-")
        to_browser_r, self._to_browser = os.pipe()
        self._from_browser, from_browser_w = os.pipe()
        args = [
            binary, "--headless=new", "--no-sandbox", "--disable-gpu", "--no-first-run", "--no-default-browser-check",
            "--disable-extensions", "--disable-background-networking", "--disable-sync", "--mute-audio",
            f"--user-data-dir={self._profile}", "--remote-debugging-pipe", "about:blank",
        ]  # fmt: skip

        def fds() -> None:  # in the child: its fd 3 reads our commands, its fd 4 writes to us
            r, w = (fcntl.fcntl(fd, fcntl.F_DUPFD, 10) for fd in (to_browser_r, from_browser_w))  # out of 3's and 4's way first
            os.dup2(r, 3)
            os.dup2(w, 4)

        # pass_fds keeps 3 and 4 open past the close of every other descriptor, which comes after preexec_fn
        self._proc = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, pass_fds=(3, 4), preexec_fn=fds)  # noqa: PLW1509 - the tests start no threads
        os.close(to_browser_r)
        os.close(from_browser_w)
        try:
            self._attach()
        except BaseException:
            self.__exit__(None, None, None)
            raise
        return self

    def __exit__(self, *exc) -> None:
        try:
            if self._proc.poll() is None:
                try:
                    self._send("Browser.close", session=False, wait=False)
                except OSError:
                    pass
                try:
                    self._proc.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    self._proc.kill()
                    self._proc.wait()
        finally:
            for fd in (self._to_browser, self._from_browser):
                try:
                    os.close(fd)
                except OSError:
                    pass
            shutil.rmtree(self._profile, ignore_errors=True)

    # -- the protocol ------------------------------------------------------------------

    def _attach(self) -> None:
        target = self._send("Target.createTarget", {"url": "about:blank"}, session=False)["targetId"]
        self._session = self._send("Target.attachToTarget", {"targetId": target, "flatten": True}, session=False)["sessionId"]
        for domain in ("Page", "Runtime", "Log"):
            self._send(f"{domain}.enable")
        self._send("Emulation.setDeviceMetricsOverride", {"width": self.width, "height": self.height, "deviceScaleFactor": 1, "mobile": False})

    def _send(self, method: str, params: dict | None = None, session: bool = True, wait: bool = True) -> dict:
        self._id += 1
        message = {"id": self._id, "method": method, "params": params or {}}
        if session and self._session:
            message["sessionId"] = self._session
        data = json.dumps(message).encode() + b"\0"
        while data:
            data = data[os.write(self._to_browser, data) :]
        if not wait:
            return {}
        wanted = self._id
        reply = self._until(lambda m: m.get("id") == wanted, f"the reply to {method}")
        if "error" in reply:
            raise BrowserError(f"{method}: {reply['error']}")
        return reply.get("result", {})

    def _until(self, match, what: str, timeout: float = TIMEOUT) -> dict:
        """Read messages (noting every event) until one ``match``es; fail naming ``what`` at the deadline."""
        deadline = time.monotonic() + timeout
        while True:
            while b"\0" in self._buffer:
                raw, self._buffer = self._buffer.split(b"\0", 1)
                message = json.loads(raw)
                if "method" in message:
                    self._note(message)
                if match(message):
                    return message
            left = deadline - time.monotonic()
            if left <= 0:
                raise BrowserError(f"gave up after {timeout:.0f} s waiting for {what}")
            ready, _, _ = select.select([self._from_browser], [], [], left)
            if ready:
                chunk = os.read(self._from_browser, 1 << 20)
                if not chunk:
                    raise BrowserError(f"chromium closed the pipe while waiting for {what} (exit {self._proc.poll()})")
                self._buffer += chunk

    def _note(self, event: dict) -> None:
        self.events.append(event)
        method, p = event["method"], event.get("params", {})
        if method == "Runtime.consoleAPICalled" and p.get("type") in ("error", "warning", "assert"):
            text = " ".join(str(a.get("value", a.get("description", ""))) for a in p.get("args", []))
            self.errors.append(f"console.{p['type']}: {text}")
        elif method == "Runtime.exceptionThrown":
            d = p.get("exceptionDetails", {})
            self.errors.append(f"exception: {d.get('exception', {}).get('description') or d.get('text')}")
        elif method == "Log.entryAdded" and p.get("entry", {}).get("level") == "error":
            e = p["entry"]
            self.errors.append(f"log ({e.get('source')}): {e.get('text')}")

    # -- what a test does ----------------------------------------------------------------

    def open(self, url: str) -> None:
        """Navigate to ``url`` and wait for its load event."""
        self.events.clear()
        result = self._send("Page.navigate", {"url": url})
        if result.get("errorText"):
            raise BrowserError(f"{url}: {result['errorText']}")
        self._until(lambda m: m.get("method") == "Page.loadEventFired", f"{url} to load")

    def evaluate(self, expression: str):
        """The value of a JavaScript expression in the page (returned by value, promises awaited)."""
        result = self._send("Runtime.evaluate", {"expression": expression, "returnByValue": True, "awaitPromise": True})
        if "exceptionDetails" in result:
            raise BrowserError(f"{expression!r} threw: {result['exceptionDetails'].get('exception', {}).get('description')}")
        return result["result"].get("value")

    def settle(self) -> None:
        """Let the page finish what its load started (a round trip through its event loop), so
        that late console messages are in ``errors``."""
        self.evaluate("new Promise(function (r) { requestAnimationFrame(function () { setTimeout(r, 0); }); })")

    def screenshot(self, path, full_page: bool = True) -> None:
        """A PNG of the page (its whole height when ``full_page``)."""
        params = {"format": "png", "captureBeyondViewport": full_page}
        if full_page:
            height = self.evaluate("Math.ceil(document.documentElement.scrollHeight)")
            params["clip"] = {"x": 0, "y": 0, "width": self.width, "height": height, "scale": 1}
        data = self._send("Page.captureScreenshot", params)["data"]
        with open(path, "wb") as f:
            f.write(base64.b64decode(data))
