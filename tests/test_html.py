"""The HTML report rendered by headless Chromium (Debian package `chromium`): the chart and every
cluster must be in the DOM Chromium builds. Skips, saying why, where Chromium is absent."""

from __future__ import annotations

import re
import shutil
import subprocess
from html.parser import HTMLParser

import pytest

from triage.report.build import build_report
from triage.report.render_html import render_html
from triage.report.synth import open_store

from test_report import Rows  # noqa: E402

CHROMIUM = next((shutil.which(n) for n in ("chromium", "chromium-browser", "google-chrome")
                 if shutil.which(n)), None)
pytestmark = pytest.mark.skipif(
    CHROMIUM is None,
    reason="headless Chromium not installed (Debian: apt-get install -y chromium); "
           ".ci/run installs it so CI always runs this test")


def chromium(args: list[str], tmp_path) -> subprocess.CompletedProcess:
    profile = tmp_path / "chromium-profile"
    profile.mkdir(exist_ok=True)
    cmd = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
           "--no-first-run", "--disable-background-networking", "--disable-component-update",
           "--disable-sync", "--disable-dev-shm-usage", f"--user-data-dir={profile}", *args]
    return subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=120)


class _Collect(HTMLParser):
    def __init__(self):
        super().__init__()
        self.tags: list[tuple[str, dict]] = []

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))


@pytest.fixture
def html_file(tmp_path):
    store = open_store(tmp_path / "t.db")
    r = Rows(store)
    for bi in range(5):
        r.crash("C-aaaaaa", bi)
    for bi in (2, 3, 4):
        r.crash("C-bbbbbb", bi, process="python3.12")
    r.crash("C-cccccc", 0)
    rep = build_report(store, since="26A5353q")
    path = tmp_path / "report.html"
    path.write_text(render_html(rep), encoding="utf-8")
    return path, [c["id"] for c in rep["clusters"]]


def test_chromium_renders_chart_and_every_cluster(html_file, tmp_path):
    path, ids = html_file
    p = chromium(["--dump-dom", path.as_uri()], tmp_path)
    assert p.returncode == 0, p.stderr.decode()[-500:]
    dom = p.stdout.decode()
    parser = _Collect()
    parser.feed(dom)
    svgs = [a for t, a in parser.tags if t == "svg" and a.get("id") == "chart"]
    assert svgs, "the chart is missing from the rendered DOM"
    bars = [a for t, a in parser.tags if t == "rect" and a.get("class") == "bar"]
    assert {a["data-cluster"] for a in bars} == set(ids)
    assert {a["data-build"] for a in bars} == {"26A5288h", "26A5316k", "26A5353q", "26A5368g",
                                               "26A5378a"}
    assert [a for t, a in parser.tags if t == "line" and a.get("id") == "since-marker"]
    sections = {a.get("data-cluster") for t, a in parser.tags
                if t == "section" and "cluster" in (a.get("class") or "")}
    assert sections == set(ids)
    assert not [a for t, a in parser.tags if t in ("script", "link")
                or (t == "img" and re.match(r"https?:", a.get("src", "")))]


def test_chromium_screenshot(html_file, tmp_path):
    path, _ = html_file
    shot = tmp_path / "shot.png"
    p = chromium([f"--screenshot={shot}", "--window-size=1200,1600", path.as_uri()], tmp_path)
    assert p.returncode == 0, p.stderr.decode()[-500:]
    data = shot.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 10_000
