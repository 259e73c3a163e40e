"""`webhook-audit report`: notebooks 01-04 (05 with --with-http) executed on a dataset, HTML that renders offline.

The browser test opens each page in a real headless Chromium with every request
routed to a local recording proxy: a chart must be a visible image, and nothing
may reach the proxy (nothing would leave the machine). CI installs Chromium
(.ci/run) and sets WEBHOOK_AUDIT_REQUIRE_CHROMIUM=1, so there the test cannot skip.
"""

from __future__ import annotations

import hashlib
import html
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import duckdb
import pandas as pd
import pytest
from click.testing import CliRunner

import webhook_core as wc
from webhook_core.audit.audit import open_audit
from webhook_core.audit.database import write_audit_database
from webhook_core.audit.schema import read_meta
from webhook_core.cli import cli
from webhook_core.exceptions import ReportError
from webhook_core.load.dataset import load_dataset
from webhook_core.report import build
from webhook_core.report.build import HTTP_NOTEBOOK, build_report, notebook_paths

from datasets import write_dataset

ROOT = Path(__file__).resolve().parent.parent
SAMPLE = ROOT / "data" / "sample"
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    out = tmp_path_factory.mktemp("report")
    result = CliRunner().invoke(cli, ["report", str(SAMPLE), "--out", str(out)])
    assert result.exit_code == 0, result.output
    yield out


def test_report_writes_one_page_per_notebook_but_the_http_one_and_an_index(report: Path) -> None:
    names = [p.stem for p in notebook_paths() if p.name != HTTP_NOTEBOOK]
    assert len(names) == 4
    assert sorted(p.stem for p in report.glob("*.html")) == sorted([*names, "index"])
    index = (report / "index.html").read_text(encoding="utf-8")
    for name in names:
        assert f'href="{name}.html"' in index
    assert "05_" not in index
    assert "Load and replay" in index and "Pairing keys" in index


def _index_headline(index: str) -> list[list[str]]:
    """The rows of the index's headline table, header first, as the reader sees them."""
    table = re.search(r"<h2>Headline per webhook</h2>\s*<table>(.*?)</table>", index, re.DOTALL)
    assert table is not None, index
    return [[html.unescape(cell) for cell in re.findall(r"<t[hd][^>]*>(.*?)</t[hd]>", row)]
            for row in re.findall(r"<tr>(.*?)</tr>", table.group(1))]


def test_report_index_shows_a_headline_per_webhook_from_its_audit_database(report: Path) -> None:
    con = duckdb.connect(str(report / build.AUDIT_DATABASE), read_only=True)
    try:
        # Computed here from the replay's rows, not by the function the index calls.
        leads = con.execute("SELECT webhook_id, state FROM lead_outcomes").fetchall()
        # A callback is charged to the webhook its token names, live or not (docs/analysis.md).
        answered_404 = con.execute("SELECT coalesce(webhook_id, token_webhook_id) FROM callback_outcomes "
                                   "WHERE status_code = 404 AND outcome <> 'refused'").fetchall()
    finally:
        con.close()
    expected = []
    for webhook_id in [*sorted({w for w, _ in leads}), None]:
        own = [state for w, state in leads if webhook_id in (None, w)]
        n_404 = sum(1 for (w,) in answered_404 if webhook_id in (None, w))
        expected.append([webhook_id or "All webhooks", f"{len(own):,}", f"{own.count('received') / len(own):.1%}",
                         f"{own.count('timed_out'):,}", f"{n_404 / len(own):.2f}"])
    unknown_404 = sum(1 for (w,) in answered_404 if w is None)
    index = (report / "index.html").read_text(encoding="utf-8")
    assert _index_headline(index) == [["Webhook", "Leads", "Answer rate", "Timed out", "404s per lead"], *expected]
    # The figures: wh-retry answered 76 % of its leads, wh-slowbank 53 %.
    rows = {row[0]: row for row in _index_headline(index)}
    assert (rows["wh-retry"][2], rows["wh-slowbank"][2]) == ("76.3%", "53.1%")
    assert unknown_404 > 0
    assert (f"<p>{unknown_404:,} more 404s went to tokens of no webhook or to webhooks without leads: they count "
            "only in the row for all webhooks.</p>") in index
    for term in ("Leads", "Answer rate", "Timed out", "404s per lead"):
        assert f"<dt>{term}</dt><dd>" in index, term


def test_report_index_of_a_database_without_leads_says_so(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    folder = write_dataset(tmp_path / "dataset", [{"webhook_id": "wh-a", "advertiser_id": "acme", "wait": False}], [],
                           [_callback("r1", "wh-a", "L1", 5)])
    database = tmp_path / "audit.duckdb"
    con = duckdb.connect(str(database))
    try:
        # The loader the commands use refuses a dispatches file without rows; a database may still hold none.
        write_audit_database(con, folder, load=lambda c, f: load_dataset(c, f))
    finally:
        con.close()
    monkeypatch.setattr(build, "_execute", lambda path, executed, *_: shutil.copy(path, executed))
    build_report(database, tmp_path / "out")
    index = (tmp_path / "out" / "index.html").read_text(encoding="utf-8")
    assert ("<p>The audit database holds no leads (no waiting webhook was loaded), so there are no per-lead "
            "figures. The pages below show what the callbacks alone say.</p>") in index
    assert "<table>" not in index and 'href="01_load_and_replay.html"' in index


@pytest.mark.parametrize("with_http", [False, True], ids=["default", "with-http"])
def test_report_runs_the_http_notebook_only_when_asked(with_http: bool, tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    ran: list[str] = []

    def copy_unexecuted(path: Path, executed: Path, dataset: Path, timeout_s: int) -> None:
        ran.append(path.name)
        shutil.copy(path, executed)

    monkeypatch.setattr(build, "_execute", copy_unexecuted)
    pages = build_report(SAMPLE, tmp_path, with_http=with_http)
    every = [p.name for p in notebook_paths()]
    expected = every if with_http else [name for name in every if name != HTTP_NOTEBOOK]
    assert ran == [page.notebook for page in pages] == expected
    assert (HTTP_NOTEBOOK in ran) is with_http
    index = (tmp_path / "index.html").read_text(encoding="utf-8")
    assert re.findall(r'href="([^"]+)\.html"', index) == [Path(name).stem for name in expected]


def test_report_given_a_relative_out_folder_injects_paths_the_notebooks_find(tmp_path: Path,
                                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    # papermill runs each notebook in the notebooks' own folder: a path relative to the user's folder
    # would name nothing there (`report data/sample --out reports`, README command 1).
    injected: list[Path] = []

    def record(path: Path, executed: Path, parameters: dict[str, str | None], timeout_s: int) -> None:
        injected.append(Path(str(parameters["DATASET"])))
        shutil.copy(path, executed)

    monkeypatch.setattr(build, "_execute", record)
    monkeypatch.chdir(tmp_path)
    build_report(SAMPLE, "reports", with_http=True)
    assert injected and all(path.is_absolute() and path.exists() for path in injected), injected
    assert (tmp_path / "reports" / "audit.duckdb").resolve() in injected


def test_report_pages_are_self_contained(report: Path) -> None:
    for page in report.glob("0*.html"):
        text = page.read_text(encoding="utf-8")
        assert not re.search(r"<(script|link|img)[^>]+(src|href)=\"https?://", text), page.name
        assert text.count("data:image/png;base64,") >= 1, f"{page.name}: no embedded chart"


def _injected(executed: Path) -> str:
    notebook = json.loads(executed.read_text(encoding="utf-8"))
    injected = [c for c in notebook["cells"] if "injected-parameters" in c["metadata"].get("tags", [])]
    assert len(injected) == 1
    return "".join(injected[0]["source"])


def _checked_outputs(out: Path) -> dict[str, list[str]]:
    """The text of each executed notebook's nbval-check-output cells: the figures the pages show."""
    figures = {}
    for executed in sorted((out / "executed").glob("*.ipynb")):
        notebook = json.loads(executed.read_text(encoding="utf-8"))
        figures[executed.name] = ["".join("".join(o.get("text", "")) for o in c["outputs"])
                                  for c in notebook["cells"] if "nbval-check-output" in c["metadata"].get("tags", [])]
    return figures


def test_report_replays_the_dataset_once_into_its_folder_and_runs_the_notebooks_on_that(report: Path) -> None:
    database = report / build.AUDIT_DATABASE
    audit = open_audit(database)
    try:
        assert audit.read_only and (read_meta(audit.con) or {}).get("dataset") == str(SAMPLE.resolve())
    finally:
        audit.con.close()
    for executed in (report / "executed").glob("*.ipynb"):
        assert f"DATASET = {json.dumps(str(database.resolve()))}" in _injected(executed), executed.name


@pytest.fixture(scope="module")
def report_from_database(report: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, str, str]]:
    database = report / build.AUDIT_DATABASE
    before = hashlib.sha256(database.read_bytes()).hexdigest()
    out = tmp_path_factory.mktemp("report-from-database")
    # DuckDB lets other processes open a file another holds only read-only: a notebook that opened the
    # database to write (or replayed into it) would fail on this lock.
    held = duckdb.connect(str(database), read_only=True)
    try:
        result = CliRunner().invoke(cli, ["report", str(database), "--out", str(out)])
    finally:
        held.close()
    assert result.exit_code == 0, result.output
    yield out, before, hashlib.sha256(database.read_bytes()).hexdigest()


def test_report_on_an_audit_database_shows_the_same_figures_and_leaves_it_alone(
        report: Path, report_from_database: tuple[Path, str, str]) -> None:
    out, before, after = report_from_database
    assert after == before
    assert not (out / build.AUDIT_DATABASE).exists()
    figures = _checked_outputs(out)
    assert sorted(figures) == sorted(p.name for p in (report / "executed").glob("*.ipynb"))
    assert all(figures.values()) and figures == _checked_outputs(report)
    for executed in (out / "executed").glob("*.ipynb"):
        assert f"DATASET = {json.dumps(str((report / build.AUDIT_DATABASE).resolve()))}" in _injected(executed), \
            executed.name


def test_report_with_http_on_a_database_whose_folder_is_gone_is_one_line(tmp_path: Path) -> None:
    folder = shutil.copytree(SAMPLE, tmp_path / "dataset")
    database = tmp_path / "audit.duckdb"
    replayed = CliRunner().invoke(cli, ["replay", str(folder), "--out", str(tmp_path / "replay"),
                                        "--database", str(database)])
    assert replayed.exit_code == 0, replayed.output
    shutil.rmtree(folder)
    result = CliRunner().invoke(cli, ["report", str(database), "--out", str(tmp_path / "out"), "--with-http"])
    assert result.exit_code == 1
    assert result.stderr.strip().splitlines()[-1] == (
        f"Error: {database}: {HTTP_NOTEBOOK} sends the dataset's callbacks to the receiver, and the folder this "
        "audit database was replayed from is not there; give the dataset folder")


def test_report_names_the_notebook_and_cell_that_broke(tmp_path: Path) -> None:
    broken = tmp_path / "notebooks" / "01_broken.ipynb"
    broken.parent.mkdir()
    broken.write_text(json.dumps({
        "cells": [
            {"cell_type": "code", "id": "params", "metadata": {"tags": ["parameters"]}, "source": "DATASET = ''",
             "outputs": [], "execution_count": None},
            {"cell_type": "code", "id": "broken", "metadata": {}, "source": "1 / 0", "outputs": [],
             "execution_count": None},
        ],
        "metadata": {"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}},
        "nbformat": 4, "nbformat_minor": 5,
    }), encoding="utf-8")
    with pytest.raises(ReportError) as caught:
        build_report(SAMPLE, tmp_path / "out", notebooks=[broken])
    assert str(caught.value) == "01_broken.ipynb: cell 3 failed: ZeroDivisionError: division by zero"


def test_report_on_a_missing_dataset_is_one_line(tmp_path: Path) -> None:
    result = CliRunner().invoke(cli, ["report", str(tmp_path / "nope"), "--out", str(tmp_path / "out")])
    assert result.exit_code == 1
    assert result.stderr.strip().splitlines()[-1] == (
        f"Error: {tmp_path / 'nope'}: no such folder or file; give a dataset folder (webhooks.json, dispatches.*, "
        "callbacks.*) or an audit database (webhook-audit replay DATASET --database FILE)")


def test_report_whose_audit_database_another_process_holds_is_one_line(tmp_path: Path) -> None:
    """A notebook still open on an earlier report's database holds its lock: say so, do not trace back."""
    out = tmp_path / "out"
    out.mkdir()
    held = out / build.AUDIT_DATABASE
    holder = subprocess.Popen(
        [sys.executable, "-c", "import duckdb, sys; con = duckdb.connect(sys.argv[1]); print('open', flush=True); "
                               "sys.stdin.read()", str(held)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline() == "open\n"
        result = CliRunner().invoke(cli, ["report", str(SAMPLE), "--out", str(out)])
    finally:
        holder.communicate("", timeout=30)
    assert result.exit_code == 1
    assert result.stderr.strip().splitlines()[-1] == (
        f"Error: {held.resolve()}: the report's audit database is open in another process (a notebook or command "
        "reading an earlier report); close it, or give another --out")
    assert "Traceback" not in result.output


def test_report_memory_limit_reaches_the_replay_every_notebook_and_the_index(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    opened: list[tuple[str | None, str | None]] = []

    def recording_open_audit(path: str | Path, **options: Any) -> wc.Audit:
        opened.append((options.get("memory_limit"), options.get("temp_directory")))
        return wc.open_audit(path, **options)

    # The index's KPIs and evidence run in this process, after the notebooks: they keep to the budget too.
    monkeypatch.setattr("webhook_core.report.build.open_audit", recording_open_audit)
    # (a budget well above this test process's size, which the whole run grows: in-process, it is the report's)
    result = CliRunner().invoke(cli, ["report", str(SAMPLE), "--out", str(tmp_path), "--memory-limit", "4GiB",
                                      "--temp-dir", str(tmp_path / "spill")])
    assert result.exit_code == 0, result.output
    assert opened == [("3276MiB", str((tmp_path / "spill").resolve()))]
    for executed in (tmp_path / "executed").glob("*.ipynb"):
        injected = _injected(executed)
        # A notebook runs beside the report's own process: its DuckDB gets its share (80 %, as in replay
        # --memory-limit) of what that process (well over 50 MiB, with its libraries) leaves of the budget.
        found = re.search(r'^MEMORY_LIMIT = "([0-9]+)MiB"$', injected, re.MULTILINE)
        assert found is not None, executed.name
        assert 0 < int(found[1]) < int(0.8 * (4096 - 50)), executed.name
        assert f"TEMP_DIRECTORY = {json.dumps(str((tmp_path / 'spill').resolve()))}" in injected, executed.name


def test_report_memory_limit_that_leaves_a_notebook_nothing_is_an_error(tmp_path: Path) -> None:
    # The budget covers the report's own process too: what it leaves must hold a notebook, or nothing runs
    # (a budget below the process's size once reached DuckDB as a negative limit, which it ignored).
    result = CliRunner().invoke(cli, ["report", str(SAMPLE), "--out", str(tmp_path / "out"), "--memory-limit", "200MB"])
    assert result.exit_code == 1
    assert re.fullmatch(r"Error: a memory budget of 191 MiB: the report's own process holds [0-9,]+ MiB of it, which "
                        r"leaves a notebook less than 512 MiB; give at least ([0-9]+) GiB \(--memory-limit \1GiB\)",
                        result.stderr.strip().splitlines()[-1]), result.stderr
    assert not (tmp_path / "out" / "audit.duckdb").exists()
    assert "Traceback" not in result.output


def _at(seconds: float) -> str:
    return f"2026-11-20T10:{int(seconds) // 60:02d}:{seconds % 60:09.6f}Z"


def _lead(lead_id: str, webhook_id: str, advertiser_id: str, at: float) -> dict[str, Any]:
    return {"lead_id": lead_id, "conversion_id": f"PC-{lead_id}", "advertiser_id": advertiser_id,
            "external_id": None, "webhook_id": webhook_id, "created_at": _at(at)}


def _callback(request_id: str, webhook_id: str, lead_id: str, at: float, **recorded: Any) -> dict[str, Any]:
    return {"request_id": request_id, "received_at": _at(at), "url": f"/webhooks/{webhook_id}?pcid=PC-{lead_id}",
            "method": "POST", "body": "", **recorded}


#: Every edge shape at once: a webhook whose leads were all answered (its curve reaches 1.0, where the
#: Kaplan-Meier band was NaN), one with a single lead, one that waits without a timeout and got no
#: callback, one that does not wait and got none; and no recorded production answer anywhere.
EDGE = (
    [{"webhook_id": "wh-all", "advertiser_id": "acme", "wait": True, "timeout_s": 30},
     {"webhook_id": "wh-one", "advertiser_id": "solo", "wait": True, "timeout_s": 60},
     {"webhook_id": "wh-silent", "advertiser_id": "quiet", "wait": True},
     {"webhook_id": "wh-nowait", "advertiser_id": "nowait", "wait": False}],
    [_lead("A1", "wh-all", "acme", 0), _lead("A2", "wh-all", "acme", 1), _lead("O1", "wh-one", "solo", 2),
     _lead("S1", "wh-silent", "quiet", 3), _lead("S2", "wh-silent", "quiet", 4),
     _lead("N1", "wh-nowait", "nowait", 5)],
    [_callback("r1", "wh-all", "A1", 5), _callback("r2", "wh-all", "A2", 7), _callback("r3", "wh-one", "O1", 9)],
)
#: The issue's case: two leads, both answered (production answered 200, as the model does).
TWO_ANSWERED = (
    [{"webhook_id": "wh-a", "advertiser_id": "acme", "wait": True, "timeout_s": 30}],
    [_lead("L1", "wh-a", "acme", 0), _lead("L2", "wh-a", "acme", 1)],
    [_callback("r1", "wh-a", "L1", 5, response_status=200), _callback("r2", "wh-a", "L2", 7, response_status=200)],
)


@pytest.mark.parametrize("data", [EDGE, TWO_ANSWERED], ids=["edge-shapes", "two-leads-both-answered"])
def test_report_holds_on_edge_data_and_leaves_no_capture_behind(
        data: tuple[list[dict[str, Any]], ...], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    folder = write_dataset(tmp_path / "dataset", *data)
    scratch = tmp_path / "tmp"  # the kernels' temporary folder: notebook 05's capture log goes there
    scratch.mkdir()
    monkeypatch.setenv("TMPDIR", str(scratch))
    # --with-http: notebook 05 is the one that writes a capture log.
    result = CliRunner().invoke(cli, ["report", str(folder), "--out", str(tmp_path / "out"), "--with-http"])
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in (tmp_path / "out").glob("0*.html")) == sorted(
        f"{p.stem}.html" for p in notebook_paths())
    assert 'href="05_http_replay.html"' in (tmp_path / "out" / "index.html").read_text(encoding="utf-8")
    # The capture log holds every callback's body: it must not outlive the report.
    assert list(scratch.glob("webhook-audit-capture-*")) == []


def test_report_on_a_dataset_with_no_usable_dispatch_is_one_line(tmp_path: Path) -> None:
    webhooks, leads, callbacks = TWO_ANSWERED
    folder = write_dataset(tmp_path / "dataset", webhooks, [{**lead, "created_at": "11/02/2026 02:12:17"}
                                                            for lead in leads], callbacks)
    result = CliRunner().invoke(cli, ["report", str(folder), "--out", str(tmp_path / "out")])
    assert result.exit_code == 1
    assert result.stderr.strip().splitlines()[-1] == (
        f"Error: {folder / 'dispatches.jsonl'}: 0 of 2 rows loaded (2 quarantined; commonest reason: bad created_at: "
        "not an ISO 8601 timestamp, e.g. line 1); fix those rows or webhooks.json (docs/semantics.md, Q3); or read "
        "timestamps written another way (e.g. 02/11/2026 02:12:17) with --timestamp-format '%d/%m/%Y %H:%M:%S'")


def test_report_reads_an_exports_timestamps_with_timestamp_format(tmp_path: Path) -> None:
    """The issue's Excel export: every created_at written 02/11/2026 02:12:17 (day first) reads whole."""
    webhooks, leads, callbacks = TWO_ANSWERED
    exported = [{**lead, "created_at": datetime.fromisoformat(lead["created_at"].replace("Z", "+00:00"))
                 .strftime("%d/%m/%Y %H:%M:%S.%f")} for lead in leads]
    folder = write_dataset(tmp_path / "dataset", webhooks, exported, callbacks)
    result = CliRunner().invoke(cli, ["report", str(folder), "--out", str(tmp_path / "out"),
                                      "--timestamp-format", "%d/%m/%Y %H:%M:%S.%f"])
    assert result.exit_code == 0, result.output
    assert "warning: dispatches.jsonl: 2 timestamps name no zone (no Z, no +hh:mm); read as UTC" \
        in result.stderr.splitlines()
    with open_audit(tmp_path / "out" / build.AUDIT_DATABASE) as audit:
        created = audit.con.execute('SELECT created_at FROM dispatches ORDER BY "row"').fetchall()
    assert [row[0] for row in created] == [datetime.fromisoformat(lead["created_at"].replace("Z", "+00:00"))
                                           for lead in leads]


class RecordingProxy:
    """A TCP listener that records every connection a browser makes through it."""

    def __init__(self) -> None:
        self.server = socket.create_server(("127.0.0.1", 0))
        self.server.settimeout(0.2)
        self.port = self.server.getsockname()[1]
        self.requests: list[bytes] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)

    def __enter__(self) -> RecordingProxy:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        self.server.close()

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                connection, _ = self.server.accept()
            except TimeoutError:
                continue
            with connection:
                connection.settimeout(5)
                try:
                    request = connection.recv(4096)
                except OSError:
                    request = b""
                # Chromium opens spare connections to its proxy ahead of need; one that asks for
                # nothing (closed or silent for 5 s) carried no request.
                if request:
                    self.requests.append(request)
                    connection.sendall(b"HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\n\r\n")


#: Chromium's own housekeeping (component updates, network time), not requests of the page; a CDN a page
#: loaded from would show up as another host.
BROWSER_SERVICES = (".googleapis.com", "clients1.google.com", "clients2.google.com", "accounts.google.com",
                    ".gvt1.com")


def _host(request: bytes) -> str:
    line = request.split(b"\r\n", 1)[0].decode("latin-1")
    target = line.split(" ")[1] if " " in line else line
    host = re.sub(r"^[a-z]+://", "", target).split("/", 1)[0]
    return host.rsplit(":", 1)[0] if host.count(":") == 1 else host


PROBE = """<script>
window.addEventListener('load', () => {
  const images = [...document.images];
  const shown = images.filter(i => i.complete && i.naturalWidth > 0 && i.getBoundingClientRect().width > 0);
  document.title = 'IMAGES ' + shown.length + '/' + images.length;
});
</script></body>"""


def _chromium(url: str, proxy_port: int, profile: Path, *extra: str) -> str:
    assert CHROMIUM is not None
    result = subprocess.run(
        [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--no-first-run", "--disable-sync", "--disable-domain-reliability",
         "--disable-features=Translate,MediaRouter,OptimizationHints,NetworkTimeServiceQuerying",
         f"--user-data-dir={profile}",
         f"--proxy-server=http://127.0.0.1:{proxy_port}", "--proxy-bypass-list=<-loopback>",
         "--virtual-time-budget=10000", *extra, url],
        capture_output=True, text=True, timeout=120, check=False,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    return result.stdout


def test_charts_render_offline_in_headless_chromium(report: Path, tmp_path: Path) -> None:
    if CHROMIUM is None:
        if os.environ.get("WEBHOOK_AUDIT_REQUIRE_CHROMIUM") == "1":
            pytest.fail("Chromium is required here (WEBHOOK_AUDIT_REQUIRE_CHROMIUM=1) but not installed")
        pytest.skip("Chromium not installed (apt-get install chromium); CI installs it")
    with RecordingProxy() as proxy:
        for page in sorted(report.glob("0*.html")):
            executed = json.loads((report / "executed" / f"{page.stem}.ipynb").read_text(encoding="utf-8"))
            charts = sum("image/png" in o.get("data", {}) for c in executed["cells"] for o in c.get("outputs", []))
            probed = tmp_path / page.name
            probed.write_text(page.read_text(encoding="utf-8").replace("</body>", PROBE, 1), encoding="utf-8")
            dom = _chromium(probed.as_uri(), proxy.port, tmp_path / "profile", "--dump-dom")
            title = re.search(r"<title>IMAGES (\d+)/(\d+)</title>", dom)
            assert title is not None, f"{page.name}: the page did not finish loading"
            assert (int(title.group(1)), int(title.group(2))) == (charts, charts), page.name
            assert charts > 0
            # As the reader's browser shows it: findings first, and no code anywhere on the page.
            assert "hl-ipython3" not in dom and "open_audit(" not in dom, page.name
            assert "Findings" in dom, page.name
        index = _chromium((report / "index.html").as_uri(), proxy.port, tmp_path / "profile", "--dump-dom")
        kpis = re.search(r"<h2>Advertisers at a glance</h2>\s*<table>(.*?)</table>", index, re.DOTALL)
        assert kpis is not None and "Answer rate" in kpis.group(1) and "⚑" in kpis.group(1)
        _chromium((report / "03_wait_times_and_timeouts.html").as_uri(), proxy.port, tmp_path / "profile",
                  f"--screenshot={tmp_path / 'page.png'}", "--window-size=1280,2400")
    hosts = sorted({_host(request) for request in proxy.requests})
    print("browser's own requests (allowed):", hosts)
    from_page = [h for h in hosts if not h.endswith(BROWSER_SERVICES)]
    assert from_page == [], f"requests left the page for {from_page}"
    assert (tmp_path / "page.png").stat().st_size > 10_000


# --------------------------------------------------------------------------- a report to hand on


def test_report_pages_show_no_code_by_default(report: Path) -> None:
    for page in report.glob("0*.html"):
        text = page.read_text(encoding="utf-8")
        # nbconvert writes each code cell's source highlighted as hl-ipython3; without code, none is written.
        assert "hl-ipython3" not in text, page.name
        assert "open_audit(" not in text, page.name


def test_report_index_opens_with_the_advertisers_kpis_and_their_flags(report: Path) -> None:
    from webhook_core.report.findings import FLAGS, advertiser_kpis

    index = (report / "index.html").read_text(encoding="utf-8")
    assert index.index("<h2>Advertisers at a glance</h2>") < index.index("<h2>Pages</h2>")
    with open_audit(report / build.AUDIT_DATABASE) as audit:
        kpis = advertiser_kpis(audit)
    section = index[index.index("<h2>Advertisers at a glance</h2>"):index.index("<h2>Pages</h2>")]
    for row in kpis.to_dict("records"):
        name = "All advertisers" if row["advertiser_id"] == "(all)" else row["advertiser_id"]
        cells = re.search(rf"<tr><th>{re.escape(name)}( <a [^>]*>\(evidence\)</a>)?</th>(.*?)</tr>", section)
        assert cells is not None, name
        assert f"{row['answer_rate']:.1%}" in cells.group(2)
        flagged = sum(bool(row[f"flag_{flag.column}"]) for flag in FLAGS)
        assert cells.group(2).count("⚑") == flagged, name
    # On the sample slowbank answers 53.1 % of its leads in time: flagged, as every reader should see.
    assert re.search(r"<tr><th>slowbank <a [^>]*>\(evidence\)</a></th><td class=\"n\">544</td>"
                     r"<td class=\"n red\">53\.1%", section)


def test_report_passes_its_settings_and_filters_to_the_notebooks(tmp_path: Path,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    injected: list[dict[str, object]] = []

    def record(path: Path, executed: Path, parameters: dict[str, object], timeout_s: int) -> None:
        injected.append(dict(parameters))
        shutil.copy(path, executed)

    monkeypatch.setattr(build, "_execute", record)
    result = CliRunner().invoke(cli, ["report", str(SAMPLE), "--out", str(tmp_path / "out"), "--candidates", "10,20",
                                      "--target", "0.9", "--lead", "L0000068", "--advertiser", "fastpay",
                                      "--since", "2026-11-03T00:00:00Z", "--show-code"])
    assert result.exit_code == 0, result.output
    assert injected and all(
        {key: parameters[key] for key in ("CANDIDATES", "TARGET", "LEAD", "ADVERTISERS", "WEBHOOKS", "SINCE", "UNTIL")}
        == {"CANDIDATES": [10.0, 20.0], "TARGET": 0.9, "LEAD": "L0000068", "ADVERTISERS": ["fastpay"],
            "WEBHOOKS": [], "SINCE": "2026-11-03T00:00:00+00:00", "UNTIL": None}
        for parameters in injected)


def test_each_page_opens_with_its_findings_from_the_data(report: Path) -> None:
    import html as html_module

    from webhook_core.report.findings import PAGE_FINDINGS, findings

    with open_audit(report / build.AUDIT_DATABASE) as audit:
        said = {page: findings(audit, page) for page in PAGE_FINDINGS}
    # On the sample each page has something to say; the timeout page names the webhook its current
    # timeout serves worst, with the figures of the advice table.
    assert all(said.values()), said
    assert said["03_wait_times_and_timeouts"][0] == (
        "wh-slowbank's current 60 s timeout keeps 58.4% of the answers that finish a wait; 628 s (10 min 28.0 s) "
        "would keep 95.2%.")
    for page, sentences in said.items():
        text = html_module.unescape(re.sub(r"<[^>]+>", "", (report / f"{page}.html").read_text(encoding="utf-8")))
        assert "Findings" in text, page
        for sentence in sentences:
            assert sentence in text, (page, sentence)


def test_report_links_each_advertiser_to_its_evidence_pack(report: Path) -> None:
    index = (report / "index.html").read_text(encoding="utf-8")
    with open_audit(report / build.AUDIT_DATABASE) as audit:
        rows = wc.evidence(audit, examples_per_reason=build.EVIDENCE_EXAMPLES)
        every = wc.evidence(audit)
    # Examples: at most EVIDENCE_EXAMPLES of each webhook and reason, the first by received_at.
    assert rows.groupby(["webhook_id", "outcome"], dropna=False).size().max() == build.EVIDENCE_EXAMPLES
    assert len(rows) < len(every)
    linked = dict(re.findall(r'<tr><th>([^<]+?) <a href="(evidence/[^"]+\.csv)">\(evidence\)</a></th>', index))
    # Every advertiser with a callback answered 404 has its pack, holding exactly its rows.
    with_404s = sorted(set(rows["advertiser_id"].dropna()) - {"(unknown)"})  # tokens of no webhook: no advertiser
    assert sorted(linked) == with_404s
    for advertiser, link in linked.items():
        pack = pd.read_csv(report / link, dtype=str, keep_default_na=False)
        assert len(pack) == int((rows["advertiser_id"] == advertiser).sum()) > 0, advertiser
        assert set(pack["advertiser_id"]) == {advertiser}
