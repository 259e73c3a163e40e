"""``webhook-audit report``: run the notebooks against a dataset and write self-contained HTML.

A dataset folder is loaded and replayed once, into ``out_dir/audit.duckdb``; an audit database is
used as given. Each notebook is executed with papermill (the database's path injected as ``DATASET``
after its ``parameters`` cell) and opens it read-only, exported by nbconvert with its PNG charts embedded, and
linked from an ``index.html``. Notebook 05 (the receiver over HTTP) joins only on
request (``with_http``): it checks the live side more than the dataset, and nbval
runs it as a test anyway. The pages load nothing from the network: scripts that
nbconvert's template would fetch from a CDN (MathJax, require.js) are not written,
since the notebooks use neither.
"""

from __future__ import annotations

import html
import math
import os
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import duckdb
import nbformat
import pandas as pd
import papermill
from nbconvert import HTMLExporter

from webhook_core import exceptions
from webhook_core.analysis.evidence import evidence
from webhook_core.analysis.rates import lead_headline
from webhook_core.analysis.timeouts import DEFAULT_CANDIDATES
from webhook_core.audit.audit import NOTHING_THERE, Audit, open_audit
from webhook_core.audit.database import write_audit_database
from webhook_core.audit.filters import Filters, apply_filters
from webhook_core.audit.schema import read_meta
from webhook_core.exceptions import AuditDatabaseLockedError, ReportError
from webhook_core.load.dataset import DUCKDB_SHARE, connect, duckdb_memory_limit
from webhook_core.report.findings import FLAGS, advertiser_kpis

__all__ = ["AUDIT_DATABASE", "HTTP_NOTEBOOK", "NOTEBOOKS_DIR", "ReportPage", "ReportSettings", "build_report",
           "notebook_paths", "report_notebooks"]

NOTEBOOKS_DIR = Path(__file__).resolve().parent / "notebooks"
HTTP_NOTEBOOK = "05_http_replay.ipynb"
#: The audit database a report on a dataset folder writes beside its pages: the tables they were computed from.
AUDIT_DATABASE = "audit.duckdb"

#: ``progress(notebook_name, index, total)`` is called before each notebook runs.
ReportProgress = Callable[[str, int, int], None]

#: The library's errors a user causes (an unusable dataset, webhooks.json): a notebook that raises
#: one failed on the dataset, not in a cell, and the report says what the library says.
_USER_ERRORS = frozenset(exceptions.__all__)

_REMOTE_SCRIPT = re.compile(r"<script[^>]*\bsrc=\"https?://[^\"]*\"[^>]*>\s*</script>", re.IGNORECASE)


@dataclass(frozen=True, slots=True)
class ReportSettings:
    """What the notebooks are asked, injected after their ``parameters`` cell: the what-if candidates, the
    advice's target, the lead whose timeline page 04 shows (None: the one with most callbacks), and the
    filters every page applies (webhook_core.audit.filters)."""

    candidates: tuple[float, ...] = DEFAULT_CANDIDATES
    target: float = 0.95
    lead: str | None = None
    filters: Filters = field(default_factory=Filters)

    def parameters(self) -> dict[str, object]:
        filters = self.filters
        return {
            "CANDIDATES": list(self.candidates), "TARGET": self.target, "LEAD": self.lead or "",
            "ADVERTISERS": list(filters.advertisers), "WEBHOOKS": list(filters.webhooks),
            "SINCE": None if filters.since is None else filters.since.isoformat(),
            "UNTIL": None if filters.until is None else filters.until.isoformat(),
        }


@dataclass(frozen=True, slots=True)
class ReportPage:
    notebook: str
    html: Path
    title: str
    question: str


def notebook_paths(folder: Path = NOTEBOOKS_DIR) -> list[Path]:
    paths = sorted(folder.glob("[0-9][0-9]_*.ipynb"))
    if not paths:
        raise ReportError(f"{folder}: no notebooks (NN_name.ipynb) found")
    return paths


def report_notebooks(*, with_http: bool = False, folder: Path = NOTEBOOKS_DIR) -> list[Path]:
    """The notebooks ``build_report`` runs: all but the HTTP one unless ``with_http``."""
    return [p for p in notebook_paths(folder) if with_http or p.name != HTTP_NOTEBOOK]


def build_report(dataset: str | Path, out_dir: str | Path, *, notebooks: list[Path] | None = None,
                 with_http: bool = False, progress: ReportProgress | None = None,
                 timeout_s: int = 1800, memory_limit: str | None = None, memory_budget: int | None = None,
                 temp_directory: str | None = None, max_quarantined: float | None = None,
                 timestamp_format: str | None = None,
                 warn: Callable[[Sequence[str]], None] | None = None, show_code: bool = False,
                 observation_end: datetime | None = None, settings: ReportSettings | None = None) -> list[ReportPage]:
    """Execute each notebook on ``dataset`` and write ``out_dir/NN_name.html`` and ``out_dir/index.html``.

    ``dataset`` is a dataset folder, replayed once into ``out_dir/audit.duckdb``, or an audit database
    (``webhook-audit replay --database``). ``notebooks`` defaults to ``report_notebooks(with_http=with_http)``.
    ``memory_limit`` is DuckDB's (e.g. ``"3GiB"``), for the replay and in every notebook, which spill to
    ``temp_directory`` beyond it. ``memory_budget`` (bytes) is the whole report's instead: a notebook runs
    beside this process, so its DuckDB gets its share (``DUCKDB_SHARE``) of what this process leaves of the
    budget when the notebook starts (the replay and the index, here, of all of it). An input file quarantined
    beyond ``max_quarantined`` stops the report before any notebook runs; ``warn`` is given the load's
    warnings (``Dataset.warnings``).
    """
    dataset = Path(dataset).resolve()
    if not dataset.exists():
        raise ReportError(f"{dataset}: {NOTHING_THERE}")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / "executed").mkdir(exist_ok=True)
    paths = notebooks if notebooks is not None else report_notebooks(with_http=with_http)
    if memory_budget is not None:
        _notebook_memory_limit(memory_budget)  # a budget too small stops the report before the replay
        memory_limit = memory_limit or duckdb_memory_limit(memory_budget)
    limits = {"MEMORY_LIMIT": memory_limit, "TEMP_DIRECTORY": temp_directory}
    database, folder, warnings = _audit_database(dataset, out, limits, max_quarantined, timestamp_format,
                                                 observation_end)
    injected = (settings or ReportSettings()).parameters()
    if warn is not None and warnings:
        warn(warnings)
    if folder is None and any(p.name == HTTP_NOTEBOOK for p in paths):
        raise ReportError(f"{dataset}: {HTTP_NOTEBOOK} sends the dataset's callbacks to the receiver, and the folder "
                          "this audit database was replayed from is not there; give the dataset folder")
    # For people who do not read code: the pages show what the cells print and draw (show_code keeps the code).
    exporter = HTMLExporter(template_name="lab", exclude_input_prompt=True, exclude_output_prompt=True,
                            exclude_input=not show_code)
    pages = []
    for index, path in enumerate(paths):
        if progress is not None:
            progress(path.name, index, len(paths))
        executed = out / "executed" / path.name
        # The receiver of notebook 05 reads the dataset folder itself; the others read the audit database.
        source = folder if path.name == HTTP_NOTEBOOK and folder is not None else database
        budget = {} if memory_budget is None else {"MEMORY_LIMIT": _notebook_memory_limit(memory_budget)}
        _execute(path, executed, {"DATASET": str(source), **limits, **budget, **injected}, timeout_s)
        notebook = nbformat.read(executed, as_version=4)
        body, _ = exporter.from_notebook_node(notebook, resources={"metadata": {"name": path.stem}})
        page = out / f"{path.stem}.html"
        page.write_text(_REMOTE_SCRIPT.sub("", body), encoding="utf-8")
        title, question = _heading(notebook)
        pages.append(ReportPage(path.name, page, title, question))
    if progress is not None:
        progress("index.html", len(paths), len(paths))
    # The index's figures and evidence keep to the notebooks' memory budget.
    with open_audit(database, memory_limit=memory_limit, temp_directory=temp_directory) as whole:
        audit = apply_filters(whole, (settings or ReportSettings()).filters)
        links = _write_evidence(audit, out / EVIDENCE_DIR)
        front = _index(pages, dataset, audit, links)
    (out / "index.html").write_text(front, encoding="utf-8")
    return pages


#: Where a report writes each advertiser's evidence pack (``evidence.py``: its 404s with reasons and hints).
EVIDENCE_DIR = "evidence"
#: A report's pack holds examples, not every 404: the first this many of each webhook and reason (the
#: whole pack is one command away, ``webhook-audit evidence``), so its size does not grow with the capture.
EVIDENCE_EXAMPLES = 200


def _write_evidence(audit: Audit, folder: Path) -> dict[str, str]:
    """One CSV per advertiser of its callbacks answered 404; their links relative to the index, by advertiser."""
    rows = evidence(audit, examples_per_reason=EVIDENCE_EXAMPLES)
    folder.mkdir(exist_ok=True)
    links: dict[str, str] = {}
    for advertiser, part in rows.groupby("advertiser_id", sort=True, dropna=False):
        name = "(unknown)" if pd.isna(advertiser) else str(advertiser)
        # A file name from an advertiser ID: only characters every file system takes, and no two alike.
        stem = re.sub(r"[^A-Za-z0-9._-]", "_", name) + f"-{len(links) + 1}"
        part.to_csv(folder / f"{stem}.csv", index=False)
        links[name] = f"{EVIDENCE_DIR}/{stem}.csv"
    return links


def _audit_database(dataset: Path, out: Path, limits: dict[str, str | None], max_quarantined: float | None,
                    timestamp_format: str | None,
                    observation_end: datetime | None) -> tuple[Path, Path | None, tuple[str, ...]]:
    """The database the notebooks read (``dataset`` itself, or ``out/audit.duckdb`` replayed from it) and
    the dataset folder, if there is one."""
    if dataset.is_file():
        if timestamp_format is not None:
            raise ReportError(f"{dataset}: an audit database was loaded already; --timestamp-format applies to a "
                              "dataset folder (replay it again with the format)")
        # Not an audit database, or of another version: the library's one-line error before any notebook runs.
        with open_audit(dataset, max_quarantined=max_quarantined, observation_end=observation_end) as audit:
            meta = read_meta(audit.con) or {}
        replayed_from = Path(meta.get("dataset", ""))
        return (dataset, replayed_from if meta.get("dataset") and replayed_from.is_dir() else None,
                audit.warnings)
    # Absolute: papermill runs each notebook in the notebooks' folder, not the caller's.
    database = (out / AUDIT_DATABASE).resolve()
    # Every notebook opens the database read-only: one replay serves them all, and none can alter it.
    try:
        con = connect(str(database), memory_limit=limits["MEMORY_LIMIT"], temp_directory=limits["TEMP_DIRECTORY"])
    except duckdb.IOException as exc:
        if "lock" not in str(exc).lower():
            raise
        raise AuditDatabaseLockedError("the report's audit database is open in another process (a notebook or "
                                       "command reading an earlier report); close it, or give another --out",
                                       path=str(database)) from exc
    try:
        loaded, _ = write_audit_database(con, dataset, max_quarantined=max_quarantined,
                                         timestamp_format=timestamp_format, observation_end=observation_end)
    finally:
        con.close()
    return database, dataset, loaded.warnings


#: The least a notebook must be left of the report's memory budget: its interpreter, libraries and DuckDB.
MIN_NOTEBOOK_MEMORY = 512 * 1024**2


def _notebook_memory_limit(budget: int) -> str:
    """DuckDB's share of what this process leaves of the report's ``budget`` (bytes) to a notebook beside it."""
    used = _own_rss()
    if budget - used < MIN_NOTEBOOK_MEMORY:
        least = math.ceil((used + MIN_NOTEBOOK_MEMORY) / 1024**3)
        raise ReportError(f"a memory budget of {budget / 1024**2:,.0f} MiB: the report's own process holds "
                          f"{used / 1024**2:,.0f} MiB of it, which leaves a notebook less than "
                          f"{MIN_NOTEBOOK_MEMORY // 1024**2} MiB; give at least {least} GiB "
                          f"(--memory-limit {least}GiB)")
    return f"{int((budget - used) * DUCKDB_SHARE) // 1024**2}MiB"


def _own_rss() -> int:
    """This process's resident memory in bytes (its peak where ``/proc`` is missing; 0 where that is too)."""
    try:
        return int(Path("/proc/self/statm").read_text().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        try:
            import resource  # (macOS counts ru_maxrss in bytes)
        except ImportError:
            return 0
        return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)


def _execute(path: Path, executed: Path, parameters: Mapping[str, object], timeout_s: int) -> None:
    try:
        papermill.execute_notebook(
            str(path), str(executed), parameters=parameters, cwd=str(path.parent),
            kernel_name="python3", progress_bar=False, log_output=False, execution_timeout=timeout_s,
            # ipykernel warns on every start that local TCP is unencrypted: noise on the user's terminal.
            extra_arguments=["--IPKernelApp.log_level=ERROR"],
        )
    except papermill.PapermillExecutionError as exc:
        if exc.ename in _USER_ERRORS:
            raise ReportError(exc.evalue) from exc
        # papermill counts the injected parameters cell; report the cell as the analyst sees it.
        raise ReportError(f"{path.name}: cell {exc.exec_count} failed: {exc.ename}: {exc.evalue}".rstrip(": ")) \
            from exc


def _heading(notebook: nbformat.NotebookNode) -> tuple[str, str]:
    first = next((c for c in notebook.cells if c.cell_type == "markdown"), None)
    if first is None:
        return "Notebook", ""
    lines = [line for line in first.source.splitlines() if line.strip()]
    title = lines[0].lstrip("# ").strip() if lines else "Notebook"
    return title, " ".join(lines[1:])


def _index(pages: list[ReportPage], dataset: Path, audit: Audit, links: dict[str, str]) -> str:
    items = "\n".join(
        f'<li><a href="{html.escape(p.html.name)}">{html.escape(p.title)}</a><p>{html.escape(p.question)}</p></li>'
        for p in pages)
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>webhook-audit report</title>
<style>body{{font-family:system-ui,sans-serif;max-width:52rem;margin:2rem auto;line-height:1.45;padding:0 1rem}}
li{{margin-bottom:1rem}} p{{margin:.25rem 0 0;color:#444}} code{{background:#f4f4f4;padding:0 .2rem}}
table{{border-collapse:collapse;margin:.5rem 0}} th,td{{padding:.2rem .7rem;border-bottom:1px solid #ddd}}
th{{text-align:left}} td.n{{text-align:right;font-variant-numeric:tabular-nums}} dt{{font-weight:600}}
td.red{{color:#b00020;font-weight:600}}
dd{{margin:0 0 .4rem 0;color:#444}}</style>
</head><body>
<h1>webhook-audit report</h1>
<p>Dataset: <code>{html.escape(str(dataset))}</code></p>
{_kpi_section(audit, links)}
{_headline_section(audit)}
<h2>Pages</h2>
<ol>
{items}
</ol>
</body></html>
"""


#: What each column of the index's headline table means, for readers who do not read the code.
_HEADLINE_WORDS = (
    ("Leads", "Waiting webhooks created: leads sent to the advertiser that had to answer through this webhook."),
    ("Answer rate", "The share of those leads whose advertiser sent the answer that finished the wait in time "
                    "(before the timeout, when the webhook has one)."),
    ("Timed out", "Leads whose timeout passed without that answer (an answer after the timeout is refused "
                  "with a 404 and does not count)."),
    ("404s per lead", "Callbacks to this webhook answered 404 (\u201cWaiting Webhook not found\u201d), divided by "
                      "its leads. Every retry counts, so an advertiser that retries failed callbacks can exceed 1."),
)


def _kpi_section(audit: Audit, links: dict[str, str]) -> str:
    """Per advertiser: the KPIs of webhook_core.report.findings with their red flags, and what each means."""
    kpis = advertiser_kpis(audit)
    heading = "<h2>Advertisers at a glance</h2>"
    if kpis.empty or int(kpis["leads"].sum()) == 0:
        return f"{heading}\n<p>No leads were loaded, so there are no per-advertiser figures.</p>"
    columns = [("Leads", "leads", "{:,}"), ("Answer rate", "answer_rate", "{:.1%}"),
               ("Timed out", "timed_out_share", "{:.1%}"), ("Misrouted", "misrouted", "{:,}"),
               ("Quarantined", "quarantined", "{:,}"), ("Disagreement", "disagreement_rate", "{:.1%}")]
    flagged = {flag.column for flag in FLAGS}
    rows = []
    for row in kpis.to_dict("records"):
        name = "All advertisers" if row["advertiser_id"] == "(all)" else str(row["advertiser_id"])
        link = links.get(str(row["advertiser_id"]))
        label = (f'{html.escape(name)} <a href="{html.escape(link)}">(evidence)</a>' if link
                 else html.escape(name))
        cells = []
        for _, column, form in columns:
            value = row[column]
            text = "" if pd.isna(value) else form.format(value)
            red = column in flagged and bool(row[f"flag_{column}"])
            cells.append(f'<td class="n{" red" if red else ""}">{html.escape(text)}{" ⚑" if red else ""}</td>')
        rows.append(f"<tr><th>{label}</th>{''.join(cells)}</tr>")
    header = "".join(f"<th>{html.escape(title)}</th>" for title, _, _ in columns)
    flags = "\n".join(f"<li>{html.escape(flag.words)}</li>" for flag in FLAGS)
    return f"""{heading}
<table>
<thead><tr><th>Advertiser</th>{header}</tr></thead>
<tbody>
{chr(10).join(rows)}
</tbody>
</table>
<p>⚑ marks a figure that needs a word with the advertiser:</p>
<ul>
{flags}
</ul>
<p>(evidence): examples of the advertiser's callbacks answered 404 (the first {EVIDENCE_EXAMPLES} of each
webhook and reason), each with its request as captured, the reason in words and what to change (CSV);
every one: <code>webhook-audit evidence DATASET --advertiser ID --out FILE.xlsx</code>.
Misrouted: callbacks sent to another webhook than their lead's (either side).
Quarantined: dispatches the
load could not read, and callbacks that named them. Disagreement: recorded answers production gave
otherwise than the model.</p>"""


def _headline_section(audit: Audit) -> str:
    """Per webhook: leads, answer rate, timed out, 404s per lead (docs/analysis.md), from the audit database."""
    headline = lead_headline(audit)
    total = headline[headline["webhook_id"] == "(all)"].iloc[0]
    heading = "<h2>Headline per webhook</h2>"
    if total["leads"] == 0:
        return (f"{heading}\n<p>The audit database holds no leads (no waiting webhook was loaded), so there are no "
                "per-lead figures. The pages below show what the callbacks alone say.</p>")
    rows = []
    for row in headline[headline["leads"] > 0].to_dict("records"):
        name = "All webhooks" if row["webhook_id"] == "(all)" else str(row["webhook_id"])
        cells = [f"{row['leads']:,}", f"{row['answer_rate']:.1%}", f"{row['timed_out']:,}",
                 f"{row['404s_per_lead']:.2f}"]
        rows.append(f"<tr><th>{html.escape(name)}</th>" + "".join(f'<td class="n">{c}</td>' for c in cells) + "</tr>")
    header = "".join(f"<th>{html.escape(name)}</th>" for name, _ in _HEADLINE_WORDS)
    words = "\n".join(f"<dt>{html.escape(name)}</dt><dd>{html.escape(text)}</dd>" for name, text in _HEADLINE_WORDS)
    # Unknown tokens (and a webhook without leads) have callbacks but no per-lead figures.
    leadless = headline[(headline["leads"] == 0) & (headline["webhook_id"] != "(all)")]
    n_404 = int(leadless["answered_404"].sum())
    note = (f"\n<p>{n_404:,} more 404s went to tokens of no webhook or to webhooks without leads: they count only "
            "in the row for all webhooks.</p>") if n_404 else ""
    return f"""{heading}
<table>
<thead><tr><th>Webhook</th>{header}</tr></thead>
<tbody>
{chr(10).join(rows)}
</tbody>
</table>{note}
<dl>
{words}
</dl>"""
