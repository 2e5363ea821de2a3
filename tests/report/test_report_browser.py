"""The HTML feature pages in a real headless Chromium (Debian's package), driven over the DevTools protocol.

One browser process is started with ``--remote-debugging-pipe`` (DevTools messages as NUL-terminated
JSON on file descriptors 3 and 4, so no websocket library is needed). From index.html it crawls every
linked page: each must load, have a heading, and every link must resolve to an existing page. The page
of the feature whose exemplar is the hostile document must show the ``<script>`` and ``<img onerror>``
payloads as text: no script or img element in the DOM, the title unchanged, no element with id
"pwned" (what the payload would add if it ran) and no JavaScript exception. ``chromium --dump-dom``
gives an independent second look at the same page.

The fixture run gets real harvest shards (the fixture's documents tokenized per word, random activations,
larger on the hostile document so pair windows land there), logit effects for alpha (computed by the real
function on a tiny GPT-2's final norm and unembedding), and a lexical profile and label candidates in their
agreed columns. Every pair page must then load with its three sections, every shaded word or token must
carry its value, every alpha page must show a histogram and a logit table, and the CSP must still forbid
script.

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

import numpy as np
import pandas as pd
import pytest
import torch

from autointerp.exemplars.logit_effects import logit_effects, write_logit_effects
from autointerp.exemplars.profile import write_profiles
from autointerp.explain.labels import write_candidates
from autointerp.harvest.shards import write_shard
from autointerp.io import file_sha256, read_json, write_json
from autointerp.report.html_render import CSP
from autointerp.report.stage import report_stage
from autointerp.rundir.layout import INDEX_VIEWS, RunDir
from helpers import ROOT
from helpers.report_run import DOCS, HOSTILE_LABEL, make_report_run, tokenize

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
  unvalued: [...document.querySelectorAll('span.tok')].filter(el => !/-?\\d+\\.\\d+/.test(el.title || '')).length,
  sections: [...document.querySelectorAll('h2.section')].map(h => h.id),
  bars: document.querySelectorAll('svg.histogram rect.bar').length,
  svgScripts: document.querySelectorAll('svg script, foreignObject').length,
  logitRows: document.querySelectorAll('div.logits tbody tr').length,
  csp: (document.querySelector('meta[http-equiv="Content-Security-Policy"]') || {}).content || null,
}))()"""


def _add_harvests(run: RunDir, rng) -> None:
    """Real shards for the fixture's models: one token per word of each document, random activations."""
    rows = [(doc_id, i, tok, s, e) for doc_id, text in DOCS.items() for i, (tok, s, e) in enumerate(tokenize(text))]
    frame = pd.DataFrame({"doc_id": [r[0] for r in rows], "position": np.array([r[1] for r in rows], np.int64),
                          "token_id": np.arange(len(rows), dtype=np.int64), "token": [r[2] for r in rows],
                          "char_start": np.array([r[3] for r in rows], np.int64), "char_end": np.array([r[4] for r in rows], np.int64),
                          "context_id": np.array([list(DOCS).index(r[0]) for r in rows], np.int64),
                          "ctx_pos": np.array([r[1] for r in rows], np.int32)})
    hostile = (frame["doc_id"] == "fixture/hostile").to_numpy()
    for slug in ("alpha", "beta"):
        folder = run.model(slug)
        manifest = read_json(folder.manifest)
        x = rng.standard_normal((len(frame), int(manifest["d_model"]))).astype(np.float32)
        x[hostile] *= 4.0
        write_shard(folder.harvest, 0, torch.from_numpy(x), frame, {"model": slug})
        manifest["shards"] = [{"index": 0, "rows": len(frame), "contexts": len(DOCS)}]
        write_json(folder.manifest, manifest)


def _add_model_extras(run: RunDir, tiny: Path) -> None:
    """alpha: logit effects through the real function (a tiny GPT-2's head), lexical profile, candidates."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model, tok = AutoModelForCausalLM.from_pretrained(tiny), AutoTokenizer.from_pretrained(tiny)
    w_dec = torch.randn(12, model.config.n_embd, generator=torch.Generator().manual_seed(0))
    alpha = run.model("alpha")
    write_logit_effects(alpha.logit_effects, logit_effects(model, "transformer.h", tok, w_dec, range(12), top_n=5), file_sha256(alpha.sae.weights))
    profile = pd.DataFrame({"feature": np.array([0, 0, 1], np.int64), "kind": ["word", "left", "word"],
                            "text": [HOSTILE_LABEL, "per", "capita"], "share": [0.71, 0.2, 0.5], "count": np.array([7, 2, 5], np.int64)})
    write_profiles(profile, alpha.lexical_profile)  # the writers of the labels work (issue 13), by the agreed columns
    flags = {"restates": False, "template_copy": False}
    write_candidates(alpha.root, [{"feature": 0, "candidate": HOSTILE_LABEL, "source": "llm", "train_score": 0.8, "kept": True, **flags},
                                  {"feature": 0, "candidate": "customs tariffs", "source": "lexical", "train_score": 0.6, "kept": False, **flags}])


@pytest.fixture(scope="module")
def site(tmp_path_factory, tiny_model_dirs):
    root = tmp_path_factory.mktemp("browser")
    cfg = make_report_run(root)
    run = RunDir(cfg.run_path)
    _add_harvests(run, np.random.default_rng(1))
    _add_model_extras(run, tiny_model_dirs["gpt2"])
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
        pair_pages = sorted((pages_dir / "pairs" / "alpha__beta").glob("*.html"))
        assert len(written) == 1 + len(INDEX_VIEWS) + len(pair_pages) + sum(outcome.pages.values())  # index, sorted views, pairs, features
        assert len(pair_pages) >= 8
        for url, facts in seen.items():
            assert facts["csp"] == CSP and "default-src 'none'" in facts["csp"] and "script-src" not in facts["csp"], url
            assert facts["unvalued"] == 0 and facts["svgScripts"] == 0, (url, facts["unvalued"])
        hostile_pairs = 0
        for page in pair_pages:
            facts = seen[page.resolve().as_uri()]
            assert facts["sections"] == ["both", "a_only", "b_only"], page
            assert facts["shaded"] >= 2 * 3, page  # at least one window: each word shaded twice, each with its value
            hostile_pairs += "onerror" in facts["text"]  # a word of the hostile document (not of any label)
        assert hostile_pairs >= 1  # the hostile document's words appear in some pair window, as text
        for page in (pages_dir / "alpha").glob("*.html"):
            facts = seen[page.resolve().as_uri()]
            if page.stem != "11":  # the dead feature: no activations, so no bars
                assert facts["bars"] == 32, page
            assert facts["logitRows"] == 5, page  # alpha is the causal model: top-5 raised and lowered tokens
        for page in (pages_dir / "beta").glob("*.html"):
            assert seen[page.resolve().as_uri()]["logitRows"] == 0 and "no logit effects" in seen[page.resolve().as_uri()]["text"]

        hostile = seen[(pages_dir / "alpha" / "0.html").resolve().as_uri()]
        assert hostile["title"] == "alpha feature 0"
        assert HOSTILE_LABEL in hostile["text"]
        assert "<script>document.title='PWNED'" in hostile["text"] and "<img src=x onerror=" in hostile["text"]
        assert hostile["shaded"] > 10  # tokens rendered as shaded spans with their activation in a title
        assert hostile["text"].count(HOSTILE_LABEL) >= 3  # label, lexical profile and label candidates, all as text
        assert "Lexical profile" in hostile["text"] and "Label candidates" in hostile["text"]
        index = seen[(pages_dir / "index.html").resolve().as_uri()]
        assert HOSTILE_LABEL in index["text"]
        assert "side by side" in index["text"] and "by correlation" in index["text"]
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


def test_dump_dom_of_hostile_pair_page_shows_escaped_document(site, tmp_path):
    pages_dir, _ = site
    hostile = [p for p in sorted((pages_dir / "pairs" / "alpha__beta").glob("*.html")) if "onerror" in p.read_text(encoding="utf-8")]
    assert hostile
    result = subprocess.run([chromium_binary(), *BROWSER_FLAGS, f"--user-data-dir={tmp_path / 'profile'}", "--dump-dom", hostile[0].resolve().as_uri()],
                            capture_output=True, text=True, timeout=120)
    dom = result.stdout
    assert result.returncode == 0 and "<h1>" in dom, result.stderr[-2000:]
    assert "<script" not in dom.lower() and "<img" not in dom.lower() and 'id="pwned"' not in dom
    assert "onerror" in dom and "&lt;" in dom  # the document's markup is shown as text, word by word
