"""The floor of ``webhook-audit pairing``'s work: every value of every callback read, and nothing else.

    python -m benchmarks.pairing_floor AUDIT.duckdb

Discovery (``analysis/pairing.py``) asks where, in every callback, a value names a lead; it cannot know a
location without reading it, so it reads every query and form pair, header and JSON leaf
(``pairing.EVERY_VALUE``). This counts those values on the audit database, read-only, as ``pairing``
opens it; ``benchmarks.audit_database`` times it beside ``pairing`` and the replay.
"""

from __future__ import annotations

import sys
import time

import webhook_core as wc
from webhook_core.analysis.pairing import EVERY_VALUE


def main() -> None:
    if len(sys.argv) != 2:
        raise SystemExit("usage: python -m benchmarks.pairing_floor AUDIT.duckdb")
    start = time.perf_counter()
    with wc.open_audit(sys.argv[1]) as audit:
        found = audit.con.execute(f"SELECT count(*) FROM ({EVERY_VALUE})").fetchall()
    print(f"{found[0][0]:,} values in {time.perf_counter() - start:.1f} s")


if __name__ == "__main__":
    main()
