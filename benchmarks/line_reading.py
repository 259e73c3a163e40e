"""Benchmark: the loader's passes over a whole file by line number, side by side for checkouts.

    python -m benchmarks.line_reading FILE [--code NAME=PATH ...] [--rounds 2] [--every 100]

For each ``--code NAME=PATH`` (a checkout; default: this one) its ``webhook_core/load/linereader.py``
(``webhook_core/linereader.py`` in checkouts older than the layered layout) is loaded on its own,
and, in turn for every checkout (every second round in reverse order), ``--rounds`` times, this
times in this process:

- ``count_lines_finding(FILE, b"\\x01")``: the line count the parallel JSONL read checks its rows
  against, found in a thread on every load;
- ``pick_lines`` of every ``--every``-th line (1 % by default: a capture where one advertiser's
  bodies are not UTF-8), and of three lines (a few to quarantine).

The results of every checkout must be equal; the script says so.
"""

from __future__ import annotations

import argparse
import importlib.util
import time
from pathlib import Path
from types import ModuleType

from benchmarks.harness import add_checkout_option, checkouts, side_by_side


def load(name: str, checkout: Path) -> ModuleType:
    path = checkout / "webhook_core" / "load" / "linereader.py"
    if not path.exists():  # a checkout from before the layered layout
        path = checkout / "webhook_core" / "linereader.py"
    spec = importlib.util.spec_from_file_location(f"linereader_{name}", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("file", type=Path)
    add_checkout_option(parser)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--every", type=int, default=100, help="pick every N-th line")
    args = parser.parse_args()
    modules = {name: load(name, path) for name, path in checkouts(parser, args.code).items()}
    lines, _ = next(iter(modules.values())).count_lines_finding(args.file, b"\x01")
    dense = list(range(args.every // 2 or 1, lines + 1, args.every))
    sparse = [1, max(lines // 2, 1), lines]
    print(f"{args.file}: {lines:,} lines; picking {len(dense):,} and {len(sparse)}")
    results: dict[str, tuple[object, ...]] = {}
    for round_number, (name, module) in side_by_side(list(modules.items()), args.rounds):
        started = time.perf_counter()
        counted = module.count_lines_finding(args.file, b"\x01")
        counted_at = time.perf_counter()
        picked = module.pick_lines(args.file, dense)
        picked_at = time.perf_counter()
        few = module.pick_lines(args.file, sparse)
        done = time.perf_counter()
        print(f"round {round_number} {name:<8} count+find {counted_at - started:5.2f} s   "
              f"pick {len(dense):,} {picked_at - counted_at:5.2f} s   pick {len(sparse)} {done - picked_at:5.2f} s",
              flush=True)
        results[name] = (counted, picked, few)
    first = next(iter(results.values()))
    same = all(r[0] == first[0] and r[1].equals(first[1]) and r[2].equals(first[2])  # type: ignore[attr-defined]
               for r in results.values())
    print("every checkout gave the same counts and lines:", same)


if __name__ == "__main__":
    main()
