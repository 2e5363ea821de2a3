"""The HTML feature pages in a real headless Chromium (Debian's package), driven over the DevTools protocol.

One browser process is started with ``--remote-debugging-pipe`` (DevTools messages as NUL-terminated
JSON on file descriptors 3 and 4, so no websocket library is needed). From index.html it crawls every
linked page: each must load, have a heading, and every link must resolve to an existing page. The page
of the feature whose exemplar is the hostile document must show the ``<script>`` and ``<img onerror>``
payloads as text: no script or img element in the DOM, the title unchanged, no element with id
"pwned" (what the payload would add if it ran) and no JavaScript exception. ``chromium --dump-dom``
gives an independent second look at the same page.

Chromium is installed by scripts/install_chromium.sh when missing (never skipped).
"""

from __future__ import annotations

import json
import os
import select
import shutil
import subprocess
import time
from pathlib import Path
from urllib.parse import unquote, urlparse

import pytest
from test_report_fixture import HOSTILE_LABEL, make_run

from autointerp.report.stage import report_stage

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.slow


def chromium_binary() -> str:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        if shutil.which(name):
            return shutil.which(name)
    result = subprocess.run(["bash", str(ROOT / "scripts" / "install_chromium.sh")], capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, f"installing chromium failed:\n{result.stdout}\n{result.stderr}"
    found = shutil.which("chromium")
    assert found, "scripts/install_chromium.sh ran but no chromium binary is on PATH"
    return found


BROWSER_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run",
                 "--no-default-browser-check", "--disable-extensions", "--disable-background-networking", "--mute-audio"]


class PipeBrowser:
    """A minimal DevTools client over --remote-debugging-pipe: commands, replies and events."""

    def __init__(self, binary: str, profile: Path):
        to_browser_r, self._to_browser = os.pipe()
        self._from_browser, from_browser_w = os.pipe()

        def wire_fds():  # the browser reads commands on fd 3 and writes replies on fd 4
            os.dup2(to_browser_r, 3)
            os.dup2(from_browser_w, 4)

        self.proc = subprocess.Popen([binary, *BROWSER_FLAGS, "--remote-debugging-pipe", f"--user-data-dir={profile}", "about:blank"],
                                     stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                     preexec_fn=wire_fds, pass_fds=(3, 4))
        os.close(to_browser_r)
        os.close(from_browser_w)
        self._buffer = b""
        self._next_id = 0
        self.events: list[dict] = []

    def send(self, method: str, params: dict | None = None, session: str | None = None, timeout: float = 30.0) -> dict:
        self._next_id += 1
        message = {"id": self._next_id, "method": method, "params": params or {}}
        if session:
            message["sessionId"] = session
        os.write(self._to_browser, json.dumps(message).encode() + b"\0")
        deadline = time.monotonic() + timeout
        while True:
            reply = self._read(deadline)
            if reply.get("id") == self._next_id:
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error']}")
                return reply.get("result", {})
            self.events.append(reply)

    def wait_event(self, method: str, session: str, timeout: float = 30.0) -> dict:
        deadline = time.monotonic() + timeout
        while True:
            for i, event in enumerate(self.events):
                if event.get("method") == method and event.get("sessionId") == session:
                    return self.events.pop(i)
            self.events.append(self._read(deadline))

    def _read(self, deadline: float) -> dict:
        while b"\0" not in self._buffer:
            left = deadline - time.monotonic()
            if left <= 0 or self.proc.poll() is not None:
                raise TimeoutError("no answer from chromium over the DevTools pipe")
            ready, _, _ = select.select([self._from_browser], [], [], left)
            if ready:
                chunk = os.read(self._from_browser, 1 << 16)
                if not chunk:
                    raise RuntimeError("chromium closed the DevTools pipe")
                self._buffer += chunk
        raw, self._buffer = self._buffer.split(b"\0", 1)
        return json.loads(raw)

    def close(self) -> None:
        try:
            self.send("Browser.close", timeout=10)
        except Exception:  # noqa: BLE001 - the browser may already be gone; it is killed below
            pass
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        os.close(self._to_browser)
        os.close(self._from_browser)


class Tab:
    def __init__(self, browser: PipeBrowser):
        self.browser = browser
        target = browser.send("Target.createTarget", {"url": "about:blank"})["targetId"]
        self.session = browser.send("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
        for domain in ("Page.enable", "Runtime.enable"):
            browser.send(domain, session=self.session)

    def open(self, url: str) -> None:
        self.browser.events.clear()
        result = self.browser.send("Page.navigate", {"url": url}, session=self.session)
        assert "errorText" not in result, f"{url}: {result.get('errorText')}"
        self.browser.wait_event("Page.loadEventFired", self.session)

    def eval(self, expression: str):
        result = self.browser.send("Runtime.evaluate", {"expression": expression, "returnByValue": True}, session=self.session)
        assert "exceptionDetails" not in result, result
        return result["result"].get("value")

    def exceptions(self) -> list[dict]:
        return [e for e in self.browser.events if e.get("method") == "Runtime.exceptionThrown" and e.get("sessionId") == self.session]


PAGE_FACTS = """(() => ({
  title: document.title,
  h1: (document.querySelector('h1') || {}).textContent || null,
  scripts: document.querySelectorAll('script').length,
  imgs: document.querySelectorAll('img').length,
  pwned: document.getElementById('pwned') !== null,
  handlers: [...document.querySelectorAll('*')].flatMap(el => [...el.attributes].map(a => a.name)).filter(n => n.startsWith('on')),
  links: [...document.querySelectorAll('a[href]')].map(a => a.href),
  text: document.body.innerText,
  shaded: document.querySelectorAll('span.tok[title]').length,
}))()"""


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    root = tmp_path_factory.mktemp("browser")
    cfg = make_run(root)
    outcome = report_stage(cfg, progress=False)
    return cfg.run_path / "pages", outcome


def test_pages_render_links_resolve_and_hostile_text_stays_text(site, tmp_path):
    pages_dir, outcome = site
    browser = PipeBrowser(chromium_binary(), tmp_path / "profile")
    try:
        tab = Tab(browser)
        queue = [(pages_dir / "index.html").resolve().as_uri()]
        seen: dict[str, dict] = {}
        while queue:
            url = queue.pop()
            if url in seen:
                continue
            tab.open(url)
            facts = tab.eval(PAGE_FACTS)
            assert not tab.exceptions(), (url, tab.exceptions())
            seen[url] = facts
            assert facts["h1"], f"{url} rendered no heading"
            assert facts["scripts"] == 0 and facts["imgs"] == 0 and not facts["handlers"] and not facts["pwned"], (url, facts)
            assert "PWNED" not in facts["title"]
            for link in facts["links"]:
                target = Path(unquote(urlparse(link).path))
                assert target.is_file(), f"{url} links to missing {target}"
                queue.append(target.as_uri())
        written = {p.resolve().as_uri() for p in pages_dir.rglob("*.html")}
        assert set(seen) == written  # every page is reachable from the index, and nothing else was linked
        assert len(written) == 1 + sum(outcome.pages.values())

        hostile = seen[(pages_dir / "alpha" / "0.html").resolve().as_uri()]
        assert hostile["title"] == "alpha feature 0"
        assert HOSTILE_LABEL in hostile["text"]
        assert "<script>document.title='PWNED'" in hostile["text"] and "<img src=x onerror=" in hostile["text"]
        assert hostile["shaded"] > 10  # tokens rendered as shaded spans with their activation in a title
        index = seen[(pages_dir / "index.html").resolve().as_uri()]
        assert HOSTILE_LABEL in index["text"]
    finally:
        browser.close()


def test_dump_dom_of_hostile_page_shows_escaped_payload(site, tmp_path):
    pages_dir, _ = site
    page = (pages_dir / "alpha" / "0.html").resolve()
    result = subprocess.run([chromium_binary(), *BROWSER_FLAGS, f"--user-data-dir={tmp_path / 'profile'}", "--dump-dom", page.as_uri()],
                            capture_output=True, text=True, timeout=120)
    dom = result.stdout
    assert result.returncode == 0 and "<h1>" in dom, result.stderr[-2000:]
    assert "<script" not in dom.lower() and "<img" not in dom.lower()
    assert "&lt;script&gt;document.title='PWNED'" in dom
    assert 'id="pwned"' not in dom
    assert "<title>alpha feature 0</title>" in dom
