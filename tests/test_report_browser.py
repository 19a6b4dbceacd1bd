"""The report opens in headless Chromium from disk: no console error, no failed load, no network
request, and every figure decoded. Driven over the DevTools protocol on a pipe, so it needs no port
and no websocket library; a page with a missing figure or a script error shows the check can fail.

Chromium is Debian's `chromium` package (.ci/run installs it). Without it the test is skipped, except
in CI (env CI set), where a missing browser is a failure.
"""

from __future__ import annotations

import fcntl
import json
import os
import select
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
from report_store import planted_report

TIMEOUT_S = 60.0


def _chromium() -> str:
    binary = shutil.which("chromium") or shutil.which("chromium-browser")
    if binary is None:
        if os.environ.get("CI", "").lower() not in ("", "0", "false"):
            pytest.fail("CI is set but chromium is not installed (apt-get install -y chromium)")
        pytest.skip("chromium is not installed (Debian: apt-get install -y chromium); CI installs it")
    return binary


def _high_fd(fd: int) -> int:
    """The same pipe end as a descriptor >= 10, so that making fds 3 and 4 cannot overwrite it."""
    high = fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, 10)
    os.close(fd)
    return high


class Browser:
    """Headless Chromium with --remote-debugging-pipe: DevTools messages are JSON separated by NUL,
    read by the browser from fd 3 and written to fd 4."""

    def __init__(self, binary: str, profile: Path):
        to_browser, self._out = os.pipe()
        self._in, from_browser = os.pipe()
        to_browser, from_browser = _high_fd(to_browser), _high_fd(from_browser)
        # A tiny Python launcher makes the pipe ends fds 3 and 4 and execs the browser (dash cannot redirect
        # fds above 9, and a preexec_fn is unsafe in a process with threads).
        launch = "import os, sys; os.dup2(int(sys.argv[1]), 3); os.dup2(int(sys.argv[2]), 4); " \
                 "os.execv(sys.argv[3], sys.argv[3:])"
        self.log = profile / "chromium.log"
        with open(self.log, "wb") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-c", launch, str(to_browser), str(from_browser), binary, "--headless=new",
                 "--no-sandbox", "--disable-gpu", "--remote-debugging-pipe", f"--user-data-dir={profile}",
                 "--no-first-run", "--disable-extensions", "--disable-sync", "--disable-background-networking",
                 "--disable-component-update", "--disable-default-apps", "--disable-dev-shm-usage", "about:blank"],
                pass_fds=(to_browser, from_browser), stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                stderr=log)
        os.close(to_browser)
        os.close(from_browser)
        self._buf = b""
        self._id = 0
        self.events: list[dict] = []

    def close(self) -> None:
        try:
            self.send("Browser.close")
        except (OSError, TimeoutError, RuntimeError):
            pass
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        os.close(self._out)
        os.close(self._in)

    def _read(self, deadline: float) -> dict:
        while b"\0" not in self._buf:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([self._in], [], [], left)[0]:
                raise TimeoutError("no answer from chromium")
            chunk = os.read(self._in, 1 << 20)
            if not chunk:
                raise RuntimeError(f"chromium closed the pipe (exit {self.proc.poll()}): "
                                   f"{self.log.read_text(errors='replace')[-2000:]}")
            self._buf += chunk
        msg, self._buf = self._buf.split(b"\0", 1)
        return json.loads(msg)

    def send(self, method: str, params: dict | None = None, session: str | None = None) -> dict:
        self._id += 1
        msg = {"id": self._id, "method": method, "params": params or {}}
        if session:
            msg["sessionId"] = session
        try:
            os.write(self._out, json.dumps(msg).encode() + b"\0")
        except BrokenPipeError:
            raise RuntimeError(f"chromium is gone (exit {self.proc.poll()}): "
                               f"{self.log.read_text(errors='replace')[-2000:]}") from None
        deadline = time.monotonic() + TIMEOUT_S
        while True:
            reply = self._read(deadline)
            if reply.get("id") == self._id:
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error']}")
                return reply.get("result", {})
            self.events.append(reply)

    def wait_for(self, method: str, session: str) -> None:
        deadline = time.monotonic() + TIMEOUT_S
        while not any(e.get("method") == method and e.get("sessionId") == session for e in self.events):
            self.events.append(self._read(deadline))

    def open(self, url: str) -> dict:
        """Load `url` in a fresh tab; return its problems, requests and images."""
        target = self.send("Target.createTarget", {"url": "about:blank"})["targetId"]
        session = self.send("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
        for domain in ("Runtime", "Log", "Page", "Network"):
            self.send(f"{domain}.enable", session=session)
        self.events.clear()
        self.send("Page.navigate", {"url": url}, session=session)
        self.wait_for("Page.loadEventFired", session)
        page = self.send("Runtime.evaluate", {"returnByValue": True, "expression": """JSON.stringify({
            images: [...document.images].map(i => ({src: i.getAttribute('src'), complete: i.complete,
                width: i.naturalWidth, axis: i.dataset.axis, task: i.dataset.task, metric: i.dataset.metric})),
            title: document.title, sections: [...document.querySelectorAll('h2[id]')].map(h => h.id)})"""},
                         session=session)
        self.send("Target.closeTarget", {"targetId": target})
        mine = [e for e in self.events if e.get("sessionId") == session]
        problems = []
        for e in mine:
            m, p = e.get("method"), e.get("params", {})
            if m == "Runtime.exceptionThrown":
                problems.append(f"exception: {p['exceptionDetails'].get('text')} "
                                f"{p['exceptionDetails'].get('exception', {}).get('description', '')}")
            elif m == "Runtime.consoleAPICalled" and p.get("type") in ("error", "assert", "warning"):
                problems.append(f"console.{p['type']}: {[a.get('value', a.get('description')) for a in p['args']]}")
            elif m == "Log.entryAdded" and p["entry"]["level"] in ("error", "warning"):
                problems.append(f"log {p['entry']['level']}: {p['entry']['text']} {p['entry'].get('url', '')}")
            elif m == "Network.loadingFailed":
                problems.append(f"failed load: {p.get('errorText')} {p.get('blockedReason') or ''}".strip())
        requests = [e["params"]["request"]["url"] for e in mine if e.get("method") == "Network.requestWillBeSent"]
        return {"problems": problems, "requests": requests, **json.loads(page["result"]["value"])}


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    b = Browser(_chromium(), tmp_path_factory.mktemp("chromium-profile"))
    yield b
    b.close()


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    return planted_report(tmp_path_factory)


def test_report_loads_with_every_figure_and_no_error(browser, report):
    study, index = report
    page = browser.open(index.as_uri())
    assert page["problems"] == []
    assert page["title"] == "losslens report"
    assert page["sections"] == ["claims", "verdicts", "correlations", "same-loss", "backtests", "scaling-law",
                                "training", "tasks"]
    # nothing but the page's own files is asked for: no server, no network
    assert page["requests"] and all(u.startswith("file://") for u in page["requests"]), page["requests"]
    broken = [i["src"] for i in page["images"] if not (i["complete"] and i["width"] > 0)]
    assert broken == []
    shown = {(i["task"], i["metric"], i["axis"]) for i in page["images"]}
    expected = {(task, metric, axis) for (task, metric), _ in study.table.groups()
                for axis in ("loss", "other", "compute")}
    expected |= {("", "", "scaling-tokens"), ("", "", "scaling-compute")}
    assert shown == expected
    assert len(page["images"]) == len(expected)


def test_the_check_fails_on_a_missing_figure_a_script_error_and_a_network_load(browser, report):
    _, index = report
    html = index.read_text()
    first = html.index('src="figures/') + len('src="figures/')
    missing = index.with_name("missing.html")
    missing.write_text(html[:first] + "no-such-figure-" + html[first:])
    page = browser.open(missing.as_uri())
    assert any(not i["width"] for i in page["images"])
    assert any("ERR_FILE_NOT_FOUND" in p for p in page["problems"]), page["problems"]

    scripted = index.with_name("scripted.html")  # without the page's policy, which would block any script
    scripted.write_text(html.replace("<meta http-equiv=\"Content-Security-Policy\"", "<meta name=\"x\"")
                        .replace("</body>", "<script>console.error('boom'); undefinedFunction();</script></body>"))
    page = browser.open(scripted.as_uri())
    assert any("undefinedFunction" in p for p in page["problems"]), page["problems"]
    assert any("boom" in p for p in page["problems"]), page["problems"]

    remote = index.with_name("remote.html")  # the policy refuses anything from the network
    remote.write_text(html.replace("</main>", '<img src="http://203.0.113.1/x.png"></main>'))
    page = browser.open(remote.as_uri())
    assert any("Content Security Policy" in p for p in page["problems"]), page["problems"]
    assert any(p.startswith("failed load") and p.endswith("csp") for p in page["problems"]), page["problems"]
