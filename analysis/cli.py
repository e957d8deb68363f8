"""infinity-analyze: fit scaling laws to a CSV of training runs.

    infinity-analyze fit --csv runs.csv --form chinchilla|powerlaw|isoflop|vocab [options]

Exit status: 0 on success, 2 on bad input or usage (one line on stderr), 1 on an
unexpected internal error (also one line).
"""
from __future__ import annotations

import argparse
import json
import sys
import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from analysis.fit_command import DEFAULT_COLUMNS, FitRequest, run_fit
from analysis.report import json_safe
from analysis.runs_csv import SCHEMA
from analysis.validation import FitInputError

PROG = "infinity-analyze"


class _UsageError(Exception):
    pass


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # type: ignore[override]
        raise _UsageError(message)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog=PROG, description="Fit scaling laws to training runs.")
    commands = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    fit = commands.add_parser(
        "fit",
        help="fit a scaling law to a CSV of runs",
        description="Fit a scaling law to a CSV of runs.",
        epilog=SCHEMA,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    fit.add_argument("--csv", required=True, help="CSV file, one row per run")
    fit.add_argument(
        "--form",
        required=True,
        choices=["chinchilla", "powerlaw", "isoflop", "vocab"],
        help="chinchilla: approach 3, L = E + A/N^alpha + B/D^beta; powerlaw: L = E + A X^-alpha; "
        "isoflop: approach 2, N_opt ~ C^a; vocab: L(N, d) = E + A d^gamma/N^alpha + B/d^beta",
    )
    fit.add_argument("--x", choices=["params", "tokens", "flops"], default="params", help="X of the power law (default params; flops falls back to 6ND)")
    for role, default in DEFAULT_COLUMNS.items():
        fit.add_argument(f"--{role}-col", dest=f"{role}_col", metavar="NAME", help=f"column holding {role} (default '{default}')")
    fit.add_argument("--bootstrap", type=int, default=100, metavar="N", help="bootstrap refits for intervals (default 100; 0 = none)")
    fit.add_argument("--seed", type=int, default=0, help="bootstrap seed (default 0)")
    fit.add_argument("--holdout", type=int, default=0, metavar="K", help="also refit without the K largest runs (budgets for isoflop) and predict them")
    fit.add_argument("--ci", type=float, default=0.95, help="interval level (default 0.95)")
    fit.add_argument("--tolerance", type=float, default=0.1, help="isoflop: relative width of a compute budget (default 0.1)")
    fit.add_argument("--tokens-from", choices=["6nd", "parabola"], default="6nd", help="isoflop: D_opt = C/(6 N_opt) or the vertex in log D")
    fit.add_argument("--tokens-per-image", type=float, metavar="T", help="treat loss as per-bit nats and convert to bits per image (needs bits)")
    fit.add_argument("--pool-bits", action="store_true", help="fit all runs together even when a bits column is present")
    fit.add_argument("--out", metavar="FILE.json", help="write the results as JSON")
    return parser


def request_from_args(args: argparse.Namespace) -> FitRequest:
    named = {role for role in DEFAULT_COLUMNS if getattr(args, f"{role}_col") is not None}
    columns = {role: getattr(args, f"{role}_col") or default for role, default in DEFAULT_COLUMNS.items()}
    return FitRequest(
        csv=args.csv,
        form=args.form,
        x=args.x,
        columns=columns,
        named_columns=frozenset(named),
        n_bootstrap=args.bootstrap,
        seed=args.seed,
        holdout=args.holdout,
        ci=args.ci,
        tolerance=args.tolerance,
        tokens_from=args.tokens_from,
        tokens_per_image=args.tokens_per_image,
        pool_bits=args.pool_bits,
    )


def main(argv: Sequence[str] | None = None) -> int:
    try:
        args = build_parser().parse_args(argv)
    except _UsageError as error:
        return _fail(f"{error} (run with --help for usage)", 2)
    except SystemExit as exit_request:  # --help
        return int(exit_request.code or 0)
    if args.out and not Path(args.out).resolve().parent.is_dir():
        return _fail(f"cannot write {args.out}: its folder does not exist", 2)
    try:
        with warnings.catch_warnings(), np.errstate(all="ignore"):
            warnings.simplefilter("ignore")
            outcome = run_fit(request_from_args(args))
        if args.out:
            Path(args.out).write_text(json.dumps(json_safe(outcome.record), indent=2, allow_nan=False) + "\n")
    except FitInputError as error:
        return _fail(str(error), 2)
    except OSError as error:
        return _fail(f"could not write {args.out}: {error.strerror or error}", 2)
    except Exception as error:  # noqa: BLE001 - the CLI promises one line, never a traceback
        return _fail(f"internal error: {type(error).__name__}: {error}", 1)
    print(outcome.text)
    if args.out:
        print(f"wrote {args.out}")
    return 0


def _fail(message: str, code: int) -> int:
    print(f"{PROG}: error: {' '.join(message.split())}", file=sys.stderr)
    return code


if __name__ == "__main__":
    sys.exit(main())
