"""infinity-analyze: collect run directories, fit scaling laws, write a report.

    infinity-analyze collect RUNS_DIR [--out results.csv]
    infinity-analyze fit --csv runs.csv --form chinchilla|powerlaw|isoflop|vocab [options]
    infinity-analyze report RUNS_DIR --out REPORT_DIR [--bootstrap N] [--include-partial]

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
from analysis.run_errors import RunDataError
from analysis.runs_csv import SCHEMA
from analysis.validation import FitInputError

PROG = "infinity-analyze"


class _UsageError(Exception):
    pass


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # type: ignore[override]
        raise _UsageError(message)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog=PROG, description="Collect training runs, fit scaling laws, write a report.")
    commands = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    collect = commands.add_parser(
        "collect",
        help="index the run directories under a folder (one row per run and budget branch)",
        description="Index the run directories under RUNS_DIR: one row per run and per budget branch. The CSV "
        "has the columns 'fit' reads by default (params = params_non_embedding, tokens = tokens_seen, "
        "loss = val_loss, flops = train_flops, bits = d) and a status column.",
    )
    collect.add_argument("runs_dir", metavar="RUNS_DIR", help="a run directory, or a folder holding run directories")
    collect.add_argument("--out", metavar="FILE.csv", help="write the index as CSV")
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
    fit.add_argument(
        "--include-partial", action="store_true", help="keep rows whose status column is not 'complete' (dropped by default)"
    )
    fit.add_argument("--out", metavar="FILE.json", help="write the results as JSON")
    report = commands.add_parser(
        "report",
        help="collect, fit and plot the runs under a folder into an HTML report",
        description="Write REPORT_DIR/report.html with its PNG figures, results.csv and fits.json.",
    )
    report.add_argument("runs_dir", metavar="RUNS_DIR", help="a run directory, or a folder holding run directories")
    report.add_argument("--out", required=True, metavar="REPORT_DIR", help="folder for the report (created if needed)")
    report.add_argument("--bootstrap", type=int, default=100, metavar="N", help="bootstrap refits for intervals (default 100; 0 = none)")
    report.add_argument("--seed", type=int, default=0, help="bootstrap seed (default 0)")
    report.add_argument("--include-partial", action="store_true", help="fit partial runs too (left out by default)")
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
        include_partial=args.include_partial,
    )


def main(argv: Sequence[str] | None = None) -> int:
    try:
        args = build_parser().parse_args(argv)
    except _UsageError as error:
        return _fail(f"{error} (run with --help for usage)", 2)
    except SystemExit as exit_request:  # --help
        return int(exit_request.code or 0)
    if args.command != "report" and args.out and not Path(args.out).resolve().parent.is_dir():
        return _fail(f"cannot write {args.out}: its folder does not exist", 2)
    if getattr(args, "bootstrap", 0) < 0:
        return _fail(f"--bootstrap must be >= 0, got {args.bootstrap}", 2)
    try:
        with warnings.catch_warnings(), np.errstate(all="ignore"):
            warnings.simplefilter("ignore")
            lines = _COMMANDS[args.command](args)
    except (FitInputError, RunDataError) as error:
        return _fail(str(error), 2)
    except OSError as error:
        return _fail(f"could not write {args.out}: {error.strerror or error}", 2)
    except Exception as error:  # noqa: BLE001 - the CLI promises one line, never a traceback
        return _fail(f"internal error: {type(error).__name__}: {error}", 1)
    print("\n".join(lines))
    return 0


def _fit(args: argparse.Namespace) -> list[str]:
    outcome = run_fit(request_from_args(args))
    if args.out:
        Path(args.out).write_text(json.dumps(json_safe(outcome.record), indent=2, allow_nan=False) + "\n")
    return [outcome.text] + ([f"wrote {args.out}"] if args.out else [])


def _collect(args: argparse.Namespace) -> list[str]:
    from analysis.results import collect_results, format_table, write_results_csv

    table = collect_results(args.runs_dir)
    _warn(table.attrs.get("notes", ()))
    lines = [format_table(table)]
    if args.out:
        write_results_csv(table, args.out)
        lines.append(f"wrote {args.out} ({len(table)} rows)")
    return lines


def _report(args: argparse.Namespace) -> list[str]:
    from analysis.scaling_report import write_report

    result = write_report(args.runs_dir, args.out, n_bootstrap=args.bootstrap, seed=args.seed, include_partial=args.include_partial)
    _warn(result.notes)
    return [result.headline, f"wrote {result.path}"]


_COMMANDS = {"fit": _fit, "collect": _collect, "report": _report}


def _warn(notes) -> None:
    for note in notes:
        print(f"{PROG}: warning: {' '.join(note.split())}", file=sys.stderr)


def _fail(message: str, code: int) -> int:
    print(f"{PROG}: error: {' '.join(message.split())}", file=sys.stderr)
    return code


if __name__ == "__main__":
    sys.exit(main())
