"""``webhook-audit serve`` and ``webhook-audit replay-http``: the live side (docs/http.md).

Thin commands like the rest of the CLI: the work is in ``live/receiver.py``,
``live/capturelog.py`` and ``live/replayhttp.py``; consoles and tables are ``output.py``'s.
"""

from __future__ import annotations

import asyncio
import ipaddress
import signal
import socket
from pathlib import Path
from types import FrameType

import click
import uvicorn
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from webhook_core.cli.errors import user_errors
from webhook_core.cli.output import print_frame, print_load_report, say, stderr, write_frame
from webhook_core.cli.params import quarantine_option, timestamp_format_option
from webhook_core.exceptions import ReceiverError
from webhook_core.live.connections import DEFAULT_LIMITS, ConnectionLimits, server_config
from webhook_core.live.receiver import DEFAULT_MAX_BODY_BYTES, Receiver, ReceiverConfig
from webhook_core.live.replayhttp import (
    Attempt,
    PlannedRequest,
    SendOptions,
    attempts_table,
    check_target,
    diff_table,
    disagreement_summary,
    parse_rate,
    plan_requests,
    plan_summary,
    refused_at_capture,
    send_plan,
)
from webhook_core.load.dataset import connect, load_dataset

__all__ = ["replay_http_command", "serve_command"]

@click.command("serve")
@click.argument("dataset", type=click.Path(path_type=Path))
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", type=click.IntRange(0, 65535), default=8080, show_default=True,
              help="Port to listen on; 0 picks a free one (the URL printed says which).")
@click.option("--prefix", default="/webhooks", show_default=True, help="Callbacks are PREFIX/{token}.")
@click.option("--capture-dir", type=click.Path(path_type=Path), default=Path("capture"), show_default=True,
              help="Capture log folder (callbacks.jsonl, registrations.jsonl); state is rebuilt from it on start. "
                   "Created private (0700) and marked as the receiver's; an existing folder must be one it "
                   "created, or empty.")
@click.option("--admin-token", envvar="WEBHOOK_AUDIT_ADMIN_TOKEN", default=None, show_envvar=True,
              help="Bearer token for POST /admin/waiting-webhooks (without one the admin endpoint is off).")
@click.option("--max-body-bytes", type=click.IntRange(min=0), default=DEFAULT_MAX_BODY_BYTES, show_default=True,
              help="Larger bodies are answered 413 and logged without the body.")
@click.option("--replay-clock", is_flag=True,
              help="Take received_at from the X-Replay-Received-At header (for replay-http; --host must be "
                   "loopback).")
@click.option("--header-timeout", type=click.FloatRange(min=0, min_open=True), default=DEFAULT_LIMITS.header_timeout,
              show_default=True, help="Seconds from a connection's opening (or a request's first byte) to the end "
              "of its headers; then the connection is closed.")
@click.option("--body-timeout", type=click.FloatRange(min=0, min_open=True), default=DEFAULT_LIMITS.body_timeout,
              show_default=True, help="Seconds from the end of the headers to the end of the body.")
@click.option("--idle-timeout", type=click.FloatRange(min=0, min_open=True), default=DEFAULT_LIMITS.idle_timeout,
              show_default=True, help="Seconds a kept-alive connection may wait for its next request.")
@click.option("--max-connections", type=click.IntRange(min=1), default=DEFAULT_LIMITS.max_connections,
              show_default=True, help="Open connections at most; one more is answered 503 and closed.")
@quarantine_option
def serve_command(dataset: Path, host: str, port: int, prefix: str, capture_dir: Path, admin_token: str | None,
                  max_body_bytes: int, replay_clock: bool, header_timeout: float, body_timeout: float,
                  idle_timeout: float, max_connections: int, max_quarantined: float) -> None:
    """Answer webhook callbacks for DATASET's waiting webhooks exactly as production does."""
    with user_errors():
        config = ReceiverConfig(prefix=prefix, max_body_bytes=max_body_bytes, admin_token=admin_token or None,
                                replay_clock=replay_clock, max_quarantined=max_quarantined)
        limits = ConnectionLimits(header_timeout, body_timeout, idle_timeout, max_connections)
        if replay_clock and not _loopback_name(host):
            _refuse_remote_clock(host)
        with stderr.status("Loading the dataset and the capture log…"):
            receiver, report = Receiver.open(dataset, capture_dir, config)
        try:
            print_load_report(report.dataset)
            torn = {name: n for name, n in report.torn_bytes.items() if n}
            for name, count in torn.items():
                say(f"{capture_dir / name}: cut {count:,} bytes of a torn last line (never answered)")
            say(f"capture log {capture_dir}: {report.log_lines:,} callbacks ({report.rejudged:,} judged again), "
                 f"{report.registrations:,} registrations; {report.dispatches:,} waiting webhooks from the dataset")
            if replay_clock:
                say("replay clock on: received_at comes from X-Replay-Received-At; never expose this server")
            try:
                sock = _listen(host, port)
            except OSError as exc:
                raise click.ClickException(f"cannot listen on {host}:{port}: {exc.strerror}") from exc
            with sock:
                if replay_clock and not _loopback_address(sock.getsockname()[0]):
                    _refuse_remote_clock(host)  # a name that resolved outside loopback
                bound = sock.getsockname()[1]
                shown = f"[{host}]" if ":" in host else host
                say(f"listening on http://{shown}:{bound} (callbacks: {config.prefix}/{{token}}; "
                     "Ctrl-C or SIGTERM stops)")
                server = uvicorn.Server(server_config(receiver, limits))
                # uvicorn re-raises the stopping signal once it has shut down; with these
                # handlers in place that is a no-op and serve ends normally, log closed.
                previous = {sig: signal.signal(sig, _stopped) for sig in (signal.SIGINT, signal.SIGTERM)}
                try:
                    server.run(sockets=[sock])
                finally:
                    for sig, handler in previous.items():
                        signal.signal(sig, handler)
        finally:
            receiver.close()
        say(f"stopped; capture log {capture_dir} holds {receiver.log.callback_lines:,} callbacks")


def _loopback_name(host: str) -> bool:
    """``localhost`` or a loopback address, judged from the text (the bound address is checked again)."""
    return host.lower() == "localhost" or _loopback_address(host.strip("[]"))


def _loopback_address(address: str) -> bool:
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    mapped = ip.ipv4_mapped if isinstance(ip, ipaddress.IPv6Address) else None
    return (mapped or ip).is_loopback


def _refuse_remote_clock(host: str) -> None:
    raise ReceiverError(f"--host {host}: not a loopback address (localhost, 127.0.0.0/8, ::1), and under "
                        "--replay-clock every caller sets the receiver's clock; listen on 127.0.0.1 or drop "
                        "--replay-clock")


def _stopped(signum: int, frame: FrameType | None) -> None:
    """Nothing: uvicorn has already shut down when it re-raises the signal."""


def _listen(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # proto=IPPROTO_TCP, not 0: asyncio sets TCP_NODELAY only on sockets that say
    # TCP, and without it each answer (headers, then body) stalls ~40 ms on Nagle
    # and delayed ACKs.
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    try:
        # A restart after a crash gets the port back at once (connections in TIME_WAIT).
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(2048)
    except OSError:
        sock.close()
        raise
    return sock


@click.command("replay-http")
@click.argument("dataset", type=click.Path(path_type=Path))
@click.option("--target", required=True, help="Base URL to send to, e.g. http://127.0.0.1:8080.")
@click.option("--concurrency", type=click.IntRange(min=1), default=8, show_default=True,
              help="Leads sent at the same time (each lead's callbacks go one after the other).")
@click.option("--rate", default=None, metavar="R/s", help="At most R requests per second (default: as fast as "
              "the target answers).")
@click.option("--retries", type=click.IntRange(min=0), default=3, show_default=True,
              help="Further attempts after a connection error or timeout (never after an answer).")
@click.option("--backoff", type=click.FloatRange(min=0), default=0.2, show_default=True,
              help="Seconds before the first retry; doubles each time (at most 5 s).")
@click.option("--timeout", type=click.FloatRange(min=0, min_open=True), default=10.0, show_default=True,
              help="Seconds per attempt.")
@click.option("--replay-clock/--no-replay-clock", default=True, show_default=True,
              help="Send X-Replay-Received-At and X-Replay-Request-Id (for serve --replay-clock).")
@click.option("--dry-run", is_flag=True, help="Print the plan (requests per webhook and method); send nothing.")
@click.option("--allow-remote", is_flag=True, help="Allow a target outside loopback.")
@click.option("--out", "out_dir", type=click.Path(path_type=Path), default=None,
              help="Folder for http_diff and http_attempts (required unless --dry-run).")
@click.option("--format", "file_format", type=click.Choice(["parquet", "csv"]), default="parquet",
              show_default=True, help="Output file format.")
@quarantine_option
@timestamp_format_option
def replay_http_command(dataset: Path, target: str, concurrency: int, rate: str | None, retries: int,
                        backoff: float, timeout: float, replay_clock: bool, dry_run: bool, allow_remote: bool,
                        out_dir: Path | None, file_format: str, max_quarantined: float,
                        timestamp_format: str | None) -> None:
    """Send DATASET's captured callbacks to a receiver and diff its answers with the model and production."""
    with user_errors():
        url = check_target(target, allow_remote=allow_remote)
        per_second = parse_rate(rate) if rate is not None else None
        if out_dir is None and not dry_run:
            raise click.ClickException("--out DIR is required (where the diff goes), unless --dry-run")
        if out_dir is not None and out_dir.exists() and not out_dir.is_dir():
            raise click.ClickException(f"{out_dir}: --out must be a folder, and this is a file")
        con = connect()
        loaded = load_dataset(con, dataset, required=("dispatches", "callbacks"), max_quarantined=max_quarantined,
                              timestamp_format=timestamp_format)
        print_load_report(loaded)
        with stderr.status("Judging with the model…"):
            planned = plan_requests(con, loaded.webhooks)
            refused = refused_at_capture(con)
        con.close()
        skipped = sum(f.quarantined for f in loaded.files if f.table == "callbacks")
        lanes = len({p.lane for p in planned})
        if dry_run:
            summary = plan_summary(planned)
            print_frame(summary, title=f"Plan: {len(planned):,} requests to {url} in {lanes:,} lanes "
                                        f"(one lane per lead), nothing sent")
            if skipped:
                say(f"{skipped:,} quarantined capture lines cannot be sent")
            if refused:
                say(f"{refused:,} lines refused by the receiver at capture are not sent")
            return
        assert out_dir is not None
        options = SendOptions(target=url, concurrency=concurrency, rate=per_second, retries=retries,
                              backoff_s=backoff, timeout_s=timeout, replay_clock=replay_clock)
        attempts = _send_with_progress(planned, options)
        diff = diff_table(planned, attempts)
        out_dir.mkdir(parents=True, exist_ok=True)
        written = [write_frame(diff, out_dir / f"http_diff.{file_format}", announce=False),
                   write_frame(attempts_table(attempts), out_dir / f"http_attempts.{file_format}", announce=False)]
        summary = disagreement_summary(diff)
        print_frame(summary, title="Answers by the model's outcome (disagree: answered otherwise; no_answer: "
                                    "gave up after retries)")
        totals = summary[["requests", "disagree", "no_answer", "recorded_disagree"]].sum()
        say(f"{int(totals.requests):,} requests to {url}: {int(totals.disagree):,} answered otherwise than the "
             f"model, {int(totals.no_answer):,} without an answer; production's recorded answers differ from the "
             f"model on {int(totals.recorded_disagree):,}" + (f"; {skipped:,} quarantined lines not sent"
                                                              if skipped else "")
             + (f"; {refused:,} refused by the receiver at capture, not sent" if refused else ""))
        for path in written:
            say(f"wrote {path}")


def _send_with_progress(planned: list[PlannedRequest], options: SendOptions) -> list[Attempt]:
    with Progress(TextColumn("Replaying"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  TimeRemainingColumn(), console=stderr, transient=True,
                  disable=not stderr.is_terminal) as progress:
        task = progress.add_task("replay", total=len(planned))

        def done(request: PlannedRequest, attempt: Attempt) -> None:
            progress.advance(task)

        return asyncio.run(send_plan(planned, options, on_done=done))
