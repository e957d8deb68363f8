"""``write_report``: collect a runs folder, fit, plot, and write a self-contained report folder.

    REPORT_DIR/report.html   figures, fit tables, the run table and the headline fit
    REPORT_DIR/*.png         the figures
    REPORT_DIR/samples/      copies of each run's samples/final.png (when present)
    REPORT_DIR/results.csv   the results index (see analysis.results)
    REPORT_DIR/fits.json     every fit (or why it was not made) as JSON

Files of an earlier report in the same folder are overwritten, never deleted; the page
references only the figures drawn this time.
"""
from __future__ import annotations

import json
import re
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from analysis import plots
from analysis import report_html as h
from analysis.curves import scale_accuracy, val_curve
from analysis.results import TEXT_COLUMNS, results_table, write_results_csv
from analysis.run_dirs import RunData, load_runs
from analysis.run_errors import RunDataError
from analysis.scaling_analysis import FitResult, ScalingAnalysis, analyze
from analysis.validation import FitInputError

FIGURES = ("loss_vs_compute.png", "loss_vs_params.png", "isoflop.png", "vocab_bits_per_image.png", "bit_accuracy_per_scale.png")
RUN_TABLE_COLUMNS = (
    "run", "task", "status", "depth", "width", "d", "params_non_embedding", "params_total", "budget_images", "train_flops", "images_seen",
    "tokens_seen", "val_loss", "ce_per_bit", "bits_per_image", "bits_per_pixel", "bit_accuracy", "token_accuracy",
    "checker_score", "wall_time_s",
)  # fmt: skip


@dataclass(frozen=True)
class ReportResult:
    path: Path
    """report.html."""
    headline: str
    fits: dict[str, Any]
    """The contents of fits.json."""
    notes: tuple[str, ...] = ()
    """One line per damaged or diverged run (named), listed in the report and left out of its fits."""


def write_report(
    runs_dir: str | Path, out_dir: str | Path, *, n_bootstrap: int = 100, seed: int = 0, include_partial: bool = False
) -> ReportResult:
    """Write the report of every run under ``runs_dir`` into ``out_dir`` (created if needed)."""
    clock = time.perf_counter()
    if n_bootstrap < 0:
        raise FitInputError(f"--bootstrap must be >= 0, got {n_bootstrap}")
    runs_dir, out_dir = Path(runs_dir), Path(out_dir)
    runs = load_runs(runs_dir)
    _prepare(out_dir)
    table = results_table(runs)
    write_results_csv(table, out_dir / "results.csv")
    analysis = analyze(table, n_bootstrap=n_bootstrap, seed=seed, include_partial=include_partial)

    figures = {
        "compute": plots.plot_loss_vs_compute(table, {r.name: val_curve(r) for r in runs}, analysis, out_dir / FIGURES[0]),
        "params": plots.plot_loss_vs_params(analysis, out_dir / FIGURES[1]),
        "isoflop": plots.plot_isoflop(analysis, out_dir / FIGURES[2]),
        "vocab": plots.plot_vocab(analysis, out_dir / FIGURES[3]),
        "accuracy": plots.plot_scale_accuracy(table, {r.name: scale_accuracy(r) for r in runs}, out_dir / FIGURES[4]),
    }
    samples = _samples_section(runs, table, out_dir)
    fits = analysis.record() | {
        "runs_dir": str(runs_dir),
        "n_runs": len(table),
        "n_bootstrap": n_bootstrap,
        "include_partial": include_partial,
        "seconds": time.perf_counter() - clock,
    }
    (out_dir / "fits.json").write_text(json.dumps(fits, indent=2, allow_nan=False) + "\n")
    sections = _sections(table, analysis, figures, samples, include_partial)
    subtitle = f"{_run_counts(table)} from {runs_dir}; generated {time.strftime('%Y-%m-%d %H:%M:%S')}"
    path = out_dir / "report.html"
    path.write_text(h.page("Scaling report", analysis.headline, subtitle, sections), encoding="utf-8")
    return ReportResult(path, analysis.headline, fits, tuple(table.attrs.get("notes", ())))


def _prepare(out_dir: Path) -> None:
    if out_dir.exists() and not out_dir.is_dir():
        raise RunDataError(f"cannot write the report to {out_dir}: it is a file")
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise RunDataError(f"cannot create {out_dir}: {error.strerror or error}") from None


def _sections(
    table: pd.DataFrame, analysis: ScalingAnalysis, figures: dict[str, Path | None], samples: str, include_partial: bool
) -> list[h.Section]:
    excluded = (
        h.paragraph("Left out of the fits" + (" (partial runs included on request):" if include_partial else ":"))
        + h.bullet_list(analysis.excluded)
        if analysis.excluded
        else h.paragraph("Every run is in the fits.")
    )
    run_table = table.loc[:, list(RUN_TABLE_COLUMNS)]
    return [
        h.Section(
            "Loss against compute",
            h.figure(figures["compute"], "Validation loss during training against exact training FLOPs (lines), final points "
                     "(filled: complete, hollow: partial), and the power law fitted to the compute-efficient runs.",
                     "No transformer runs to draw.")
            + _fit_texts(analysis.frontier),
        ),
        h.Section(
            "Loss against parameters",
            h.figure(figures["params"], "Final validation loss against non-embedding parameters, one point per model size "
                     "(its largest budget), with the per-d power laws.", "No complete transformer runs with finite losses.")
            + _fit_texts(analysis.loss_vs_params)
            + _fit_texts(analysis.loss_vs_params_total),
        ),
        h.Section(
            "IsoFLOP profiles (approach 2)",
            h.figure(figures["isoflop"], "Loss of each model size interpolated (log-log) between its budget branches at shared "
                     "compute budgets; parabola vertices give N_opt(C).", "IsoFLOP skipped: see the reason below.")
            + _fit_texts(analysis.isoflop)
            + h.paragraph("Approach 3 (parametric L(N, D)): infinity-analyze fit --csv results.csv --form chinchilla."),
        ),
        h.Section("Vocabulary (bits per token d)", _vocab_body(analysis, figures["vocab"])),
        h.Section(
            "Bit accuracy per scale",
            h.figure(figures["accuracy"], "Final validation bit accuracy at each scale of the schedule (dotted: partial runs).",
                     "No run logged val/bit_accuracy_scale/<k>."),
        ),
        h.Section("Samples", samples),
        h.Section("Runs", excluded + h.table(run_table, TEXT_COLUMNS)),
    ]


def _vocab_body(analysis: ScalingAnalysis, image: Path | None) -> str:
    body = h.figure(image, "Validation bits per image (the same unit for every d) against non-embedding parameters.",
                    "No complete runs with bits per image.")
    if not analysis.best_bits.empty:
        body += h.paragraph("Best d per model size: lowest bits per image observed, and predicted by the per-d laws.")
        body += h.table(analysis.best_bits)
    return body + _fit_texts(analysis.bits_per_image_vs_params) + h.preformatted(analysis.vocab.text())


def _fit_texts(results: dict[float, FitResult]) -> str:
    return "".join(h.preformatted(result.text()) for result in results.values())


def _samples_section(runs: list[RunData], table: pd.DataFrame, out_dir: Path) -> str:
    """A grid of each run's samples/final.png: one row per d, one column per depth (largest budget with samples)."""
    rows = table.set_index("run")
    chosen: dict[tuple[float, float], tuple[RunData, float]] = {}
    for run in runs:
        image = run.path / "samples" / "final.png" if run.path else None
        if image is None or not image.is_file() or rows.at[run.name, "task"] != "transformer":
            continue
        key = (rows.at[run.name, "d"], rows.at[run.name, "depth"])
        images_seen = rows.at[run.name, "images_seen"]
        if key not in chosen or images_seen > chosen[key][1]:
            chosen[key] = (run, images_seen)
    if not chosen:
        return h.note("No run directory holds samples/final.png.")
    (out_dir / "samples").mkdir(exist_ok=True)
    depths = sorted({depth for _, depth in chosen})
    grid = []
    for d in sorted({d for d, _ in chosen}):
        cells: list[tuple[str | None, str]] = []
        for depth in depths:
            if (d, depth) not in chosen:
                cells.append((None, ""))
                continue
            run, images_seen = chosen[(d, depth)]
            target = out_dir / "samples" / (re.sub(r"[^A-Za-z0-9_.-]+", "_", run.name) + ".png")
            shutil.copyfile(run.path / "samples" / "final.png", target)
            cells.append((f"samples/{target.name}", f"{run.name} ({images_seen:.3g} images)"))
        grid.append((f"d = {d:g}", cells))
    return h.paragraph("Each run's samples/final.png (the same prompts for every run).") + h.image_grid(grid, [f"depth {x:g}" for x in depths])


def _run_counts(table: pd.DataFrame) -> str:
    complete = int((table["status"] == "complete").sum())
    branches = int((table["parent"] != "").sum())
    return f"{len(table)} runs ({complete} complete, {len(table) - complete} not; {branches} budget branches)"
