"""``webhook-audit``: a thin command line over webhook_core.

Every command's work is a library call; the modules here parse options, show progress and print
tables (``output.py``, shared by every command). A user's mistake is one line on stderr and exit
code 1, never a traceback (``errors.py``).
"""

from __future__ import annotations

import click

from webhook_core.cli import output
from webhook_core.cli.analysis_commands import (
    pairing_command,
    summary_command,
    timeline_command,
    timeouts_command,
    wait_times_command,
)
from webhook_core.cli.compare_commands import compare_command
from webhook_core.cli.evidence_commands import evidence_command
from webhook_core.cli.live_commands import replay_http_command, serve_command
from webhook_core.cli.replay_commands import replay_command
from webhook_core.cli.report_commands import generate_command, report_command

__all__ = ["cli", "main"]


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="webhook-audit")
@click.option("--wide", is_flag=True, help="Print every table whole; by default a table wider than the terminal "
                                            "(or COLUMNS) is split into parts that fit.")
def cli(wide: bool) -> None:
    """Audit advertiser webhook callbacks: replay them against waiting webhooks
    under production's rules and say, per callback, why it was answered 404.

    A DATASET is a folder with webhooks.json, dispatches.{csv,jsonl,parquet} and
    callbacks.{jsonl,har,parquet}; see docs/semantics.md.
    """
    output.WIDE = wide


for _command in (replay_command, summary_command, wait_times_command, timeouts_command, pairing_command,
                 timeline_command, compare_command, evidence_command, report_command, generate_command, serve_command,
                 replay_http_command):
    cli.add_command(_command)


def main() -> None:
    cli(prog_name="webhook-audit")
