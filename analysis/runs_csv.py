"""Reading a table of runs from CSV, with one-line messages for every kind of bad input."""
from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import numpy as np
import pandas as pd

from analysis.validation import FitInputError

_MAX_LISTED = 8

SCHEMA = """\
CSV schema: a header row, then one row per training run. Columns (rename with --<name>-col):
  params  model parameters N, counted consistently     needed except by powerlaw --x tokens
          (e.g. non-embedding)
  tokens  training tokens D                            chinchilla; isoflop and powerlaw --x flops
                                                       when there is no flops column
  loss    final or validation loss                     always
  flops   training compute C (default 6 N D)           optional
  bits    bits per token d (vocabulary 2^d)            optional: one fit per d; required by vocab
  status  run status, as `collect` writes it          optional: rows not 'complete' are left out
                                                       unless --include-partial
  task    'transformer' or 'tokenizer'                 optional: only transformer rows are fitted
Other columns are ignored. Every value used must be finite and > 0. Data rows are
counted from 1, the first line after the header. `infinity-analyze collect` writes
this schema (params = params_non_embedding; pick params_total with --params-col)."""


def read_table(path: str | Path) -> pd.DataFrame:
    """The CSV as a table with stripped column names; FitInputError (one line) if it cannot be read."""
    path = Path(path)
    if not path.exists():
        raise FitInputError(f"no such file: {path}")
    if not path.is_file():
        raise FitInputError(f"not a file: {path}")
    try:
        table = pd.read_csv(path)
    except pd.errors.EmptyDataError:
        raise FitInputError(f"{path} is empty") from None
    except (pd.errors.ParserError, UnicodeDecodeError, ValueError) as error:
        first_line = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise FitInputError(f"could not read {path} as CSV: {first_line}") from None
    table.columns = [str(c).strip() for c in table.columns]
    if table.empty:
        raise FitInputError(f"{path} has a header but no data rows")
    return table


def select_columns(
    table: pd.DataFrame, path: str | Path, required: Mapping[str, str], optional: Mapping[str, str] | None = None
) -> dict[str, np.ndarray]:
    """Arrays for each role: ``required``/``optional`` map a role (``"loss"``) to its column name.

    Optional roles whose column is absent are left out. Every column used must hold
    finite positive numbers; otherwise one FitInputError lists the offending rows, named by
    the table's index (data row = label + 1, as :func:`read_table` numbers them from 0).
    """
    optional = optional or {}
    missing = [(role, name) for role, name in required.items() if name not in table.columns]
    if missing:
        role, name = missing[0]
        available = ", ".join(repr(str(c)) for c in table.columns)
        raise FitInputError(f"column '{name}' not found in {path} (available: {available}); choose another with --{role}-col")
    roles = dict(required) | {role: name for role, name in optional.items() if name in table.columns}
    columns: dict[str, np.ndarray] = {}
    problems = []
    for role, name in roles.items():
        values = pd.to_numeric(table[name], errors="coerce").to_numpy(dtype=float)
        problem = _describe_bad_values(name, values, table.index.to_numpy())
        if problem:
            problems.append(problem)
        columns[role] = values
    if problems:
        raise FitInputError("; ".join(problems))
    return columns


def _describe_bad_values(name: str, values: np.ndarray, labels: np.ndarray) -> str:
    missing = ~np.isfinite(values)
    non_positive = np.isfinite(values) & (values <= 0)
    parts = []
    if missing.any():
        parts.append(f"{_count(missing, 'missing, non-numeric or infinite value')} ({_rows(labels[missing])})")
    if non_positive.any():
        parts.append(f"{_count(non_positive, 'non-positive value')} ({_rows(labels[non_positive])})")
    return f"column '{name}' has " + " and ".join(parts) if parts else ""


def _count(mask: np.ndarray, noun: str) -> str:
    count = int(mask.sum())
    return f"{count} {noun}{'' if count == 1 else 's'}"


def _rows(labels: np.ndarray) -> str:
    rows = np.asarray(labels, dtype=int) + 1
    listed = ", ".join(str(r) for r in rows[:_MAX_LISTED])
    more = f" and {rows.size - _MAX_LISTED} more" if rows.size > _MAX_LISTED else ""
    return f"data row{'' if rows.size == 1 else 's'} {listed}{more}"
