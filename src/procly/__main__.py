"""``python -m procly tour | bench``."""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time


def _bench(args: argparse.Namespace) -> int:
    from ._bench import _harness

    repeats = args.repeats or (3 if args.quick else 7)

    def log(msg: str) -> None:
        print(msg, file=sys.stderr, flush=True)

    print(
        f"procly bench: procly vs the standard library, runners interleaved, {repeats} rounds, "
        f"medians; {os.cpu_count()} CPUs, Python {platform.python_version()}",
        file=sys.stderr,
    )
    started = time.perf_counter()
    results = _harness.run_sections(args.only, args.quick, repeats, log, args.case)
    print(_harness.format_table(results))
    if args.json:
        meta = {
            "python": platform.python_version(),
            "cpus": os.cpu_count(),
            "quick": args.quick,
            "repeats": repeats,
            "seconds": time.perf_counter() - started,
        }
        _harness.write_json(results, args.json, meta)
        print(f"\nJSON written to {args.json}")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m procly")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("tour", help="run the seed examples and explain them")
    bench = sub.add_parser("bench", help="procly vs the standard library, side by side")
    bench.add_argument("--quick", action="store_true", help="fewer rounds, smaller sizes (about a minute)")
    bench.add_argument("--json", metavar="PATH", help="also write the results as JSON")
    bench.add_argument("--only", nargs="+", metavar="SECTION", help="run only these sections")
    bench.add_argument(
        "--case", metavar="SUBSTRING", help="run only the cases whose name contains this"
    )
    bench.add_argument("--repeats", type=int, help="rounds per case (default 7, or 3 with --quick)")
    args = parser.parse_args(argv)
    if args.command == "tour":
        from ._tour import run_tour

        return run_tour()
    return _bench(args)


if __name__ == "__main__":
    sys.exit(main())
