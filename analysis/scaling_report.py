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
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from analysis import plots
from analysis.report import json_safe as report_json_safe
from analysis import report_html as h
from analysis.curves import scale_accuracy, val_curve
from analysis.results import D_INDEPENDENT, TEXT_COLUMNS, results_table, write_results_csv
from analysis.run_dirs import RunData, load_runs
from analysis.run_errors import RunDataError
from analysis.scaling_analysis import FitResult, ScalingAnalysis, analyze
from analysis.validation import FitInputError

FIGURES = ("loss_vs_compute.png", "loss_vs_params.png", "isoflop.png", "vocab_bits_per_image.png", "bit_accuracy_per_scale.png")
RUN_TABLE_COLUMNS = (
    "run", "task", "status", "seed", "tokenizer_kind", "depth", "width", "d", "params_non_embedding", "params_total", "budget_images",
    "train_flops", "images_seen", "tokens_seen", "val_loss", "ce_per_bit", "bits_per_image", "bits_per_pixel", "bit_accuracy",
    "token_accuracy", "psnr_expected", "mse_expected", "psnr_predicted", "mse_predicted", "psnr_tokenizer", "checker_score", "psnr",
    "wall_time_s",
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
    tokenizers = tokenizer_table(runs, table)
    accuracy = scale_accuracy_table(runs, table)
    fits = analysis.record() | {
        "runs_dir": str(runs_dir),
        "n_runs": len(table),
        "n_bootstrap": n_bootstrap,
        "include_partial": include_partial,
        "seconds": time.perf_counter() - clock,
    }
    fits |= {
        "tokenizers": report_json_safe(tokenizers.to_dict(orient="records")),
        "tokenizer_spread": report_json_safe(tokenizer_spread(tokenizers).to_dict(orient="records")),
        "bit_accuracy_per_scale": report_json_safe(accuracy.to_dict(orient="records")),
        "main_figures": summary_lines(table, analysis, tokenizers, accuracy),
    }
    (out_dir / "fits.json").write_text(json.dumps(fits, indent=2, allow_nan=False) + "\n")
    sections = _sections(table, analysis, figures, samples, include_partial, tokenizers, accuracy)
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
    table: pd.DataFrame, analysis: ScalingAnalysis, figures: dict[str, Path | None], samples: str, include_partial: bool,
    tokenizers: pd.DataFrame | None = None, accuracy: pd.DataFrame | None = None,
) -> list[h.Section]:
    excluded = (
        h.paragraph("Left out of the fits" + (" (partial runs included on request):" if include_partial else ":"))
        + h.bullet_list(analysis.excluded)
        if analysis.excluded
        else h.paragraph("Every run is in the fits.")
    )
    run_table = table.loc[:, [c for c in RUN_TABLE_COLUMNS if c in table.columns]]
    tokenizers = tokenizers if tokenizers is not None else pd.DataFrame()
    accuracy = accuracy if accuracy is not None else pd.DataFrame()
    return [
        h.Section("Main figures", _summary_body(table, analysis, tokenizers, accuracy)),
        h.Section("Tokenizers", _tokenizer_body(tokenizers)),
        h.Section("Bits per image against size (per d)", _bits_per_image_body(analysis, figures["vocab"])),
        h.Section("Vocabulary: best d per size (d-independent measure)", _vocab_body(analysis)),
        h.Section("Seed-to-seed spread", _seed_body(analysis, table)),
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
        h.Section(
            "Bit accuracy per scale",
            h.figure(figures["accuracy"], "Final validation bit accuracy (teacher forcing) at each scale of the schedule (dotted: partial runs).",
                     "No run logged val/bit_accuracy_scale/<k>.")
            + (h.table(accuracy, ("run", "tokenizer_kind")) if len(accuracy) else ""),
        ),
        h.Section("Samples", samples),
        h.Section("Runs", excluded + h.table(run_table, TEXT_COLUMNS)),
    ]


def summary_lines(table: pd.DataFrame, analysis: ScalingAnalysis, tokenizers: pd.DataFrame, accuracy: pd.DataFrame) -> list[str]:
    """The study's figures in one list, each naming its measure (also written to fits.json)."""
    lines = []
    spread = tokenizer_spread(tokenizers)
    if not spread.empty:
        kinds = ", ".join(sorted(set(tokenizers["kind"])))
        parts = [f"d={r.d:g} {r.psnr_mean:.2f} dB (spread {r.psnr_spread:.2f} over {r.seeds} seeds)" for r in spread.itertuples()]
        lines.append(f"Tokenizers ({kinds}), held-out PSNR: " + "; ".join(parts) + ".")
    if len(accuracy):
        later = [c for c in accuracy.columns if c.startswith("scale_") and c != "scale_1"]
        if later:
            values = accuracy[later].to_numpy(dtype=float)
            i, j = np.unravel_index(np.nanargmax(values), values.shape)
            lines.append(f"Bit accuracy (teacher forcing) on scales after the first: at most {values[i, j]:.4f} ({accuracy['run'].iloc[i]}, {later[j]}).")
    runs = table[(table["task"] == "transformer") & (table["parent"] == "") & (table["status"] == "complete") & (table["seed"] == 0)]
    for d, fit in analysis.bits_per_image_loglog.items():
        at = runs[runs["d"] == d].sort_values("params_non_embedding")
        values = " / ".join(f"{v:.1f}" for v in at["bits_per_image"])
        if hasattr(fit, "alpha"):
            low, high = fit.alpha_interval
            flag = " WARNING: interval wider than alpha" if fit.interval_wider_than_estimate else ""
            lines.append(f"d={d:g}: bits per image {values} over {fit.n_points} sizes; log-log r = {fit.r:.4f}, alpha = {fit.alpha:.4g} [{low:.4g}, {high:.4g}]{flag}.")
        else:
            lines.append(f"d={d:g}: bits per image {values}; log-log line not fitted ({fit}).")
        checker = at["checker_score"].to_numpy(dtype=float)
        if checker.size:
            lines.append(f"d={d:g}: checker score on samples, smallest to largest size: " + " / ".join(f"{v:.3f}" for v in checker) + ".")
    if not analysis.best_bits.empty:
        pairs = ", ".join(f"depth {r.depth:g}: d={r.best_d_observed:g}" for r in analysis.best_bits.itertuples())
        lines.append(f"Best d per size (lowest {D_INDEPENDENT}, d-independent): {pairs}.")
    fit = analysis.vocab.fit
    if fit is not None:
        params = ", ".join(f"{name} = {getattr(fit, name):.4g}" for name in ("E", "A", "alpha", "gamma", "B", "beta"))
        lines.append(f"Joint law in {D_INDEPENDENT}, {analysis.vocab.title.split(' in ')[0].replace('joint vocabulary law ', '')}: "
                     f"{params} ({fit.n_points} runs, R^2 {fit.goodness.r2:.4f}).")
    else:
        lines.append(f"Joint law L(N, d): not fitted ({analysis.vocab.note}).")
    return lines


def _summary_body(table: pd.DataFrame, analysis: ScalingAnalysis, tokenizers: pd.DataFrame, accuracy: pd.DataFrame) -> str:
    lines = summary_lines(table, analysis, tokenizers, accuracy)
    return h.bullet_list(lines) if lines else h.note("No runs to summarize.")


def _bits_per_image_body(analysis: ScalingAnalysis, image: Path | None) -> str:
    body = h.figure(image, "Measure: validation NLL in bits per image (per-bit cross-entropy / ln 2 x d x tokens per image, "
                    "teacher forcing) against non-embedding parameters, with the per-d laws with a floor. Bits per image "
                    "compare models of one d; across d they also count the extra bits a larger d encodes, so they do not "
                    "rank vocabularies (the next section does, in a d-independent measure).", "No complete runs with bits per image.")
    for d, fit in analysis.bits_per_image_loglog.items():
        text = fit.text("non-embedding params") if hasattr(fit, "text") else f"not fitted: {fit}"
        body += h.preformatted(f"bits per image vs non-embedding params, d={d:g}\n{text}")
    return body + _fit_texts(analysis.bits_per_image_vs_params)


def _vocab_body(analysis: ScalingAnalysis) -> str:
    body = h.paragraph(
        "Measure: mse_expected, the mean squared pixel error (images in [-1, 1]) against the originals of the held-out images "
        "decoded from the model's own teacher-forced predictions (every scale predicted from the true earlier scales), taking "
        "each bit's expected code (2p - 1)/sqrt(d): the posterior-mean latent, a proper (Brier-type) score of the bit "
        "probabilities; psnr_expected is the same error as PSNR (dB, higher is better). Beside it, psnr_predicted decodes the "
        "argmax bits. All have the same unit for every d: a larger d reconstructs better but leaves more bits to predict. "
        "The joint law L(N, d) is fitted to mse_expected."
    )
    if not analysis.best_bits.empty:
        body += h.paragraph("Best d per model size: lowest mse_expected observed, and the d the joint law predicts best at that N.")
        body += h.table(analysis.best_bits, ("best_d_predicted_by",))
    return body + h.preformatted(analysis.vocab.text()) + _fit_texts(analysis.quality_vs_params)


def _seed_body(analysis: ScalingAnalysis, table: pd.DataFrame) -> str:
    spread = analysis.seed_spread
    if spread.empty:
        return h.note("No model size has runs of two or more seeds (set sweep.seeds=2).")
    body = h.paragraph(
        "Runs of the smallest size repeated with another seed (initialization and data order). Seed replicates are shown here "
        "and left out of every fit. Beside each spread, the effect it is compared with."
    )
    body += h.table(spread)
    runs = table[(table["task"] == "transformer") & (table["parent"] == "") & (table["status"] == "complete") & (table["seed"] == 0)]
    lines = []
    for row in spread.itertuples(index=False):
        at = runs[runs["d"] == row.d].sort_values("params_non_embedding")
        if len(at) < 2:
            continue
        effect = float(at["bits_per_image"].iloc[0] - at["bits_per_image"].iloc[-1])
        quality = float(at["psnr_expected"].iloc[-1] - at["psnr_expected"].iloc[0])
        lines.append(
            f"d={row.d:g}: bits per image fall by {effect:.3g} from the smallest to the largest size; seed spread at the smallest "
            f"{row.bits_per_image_spread:.3g} ({'larger' if abs(effect) > row.bits_per_image_spread else 'NOT larger'} than the spread). "
            f"psnr_expected changes by {quality:+.3g} dB; seed spread {row.psnr_expected_spread:.3g} dB."
        )
    return body + (h.bullet_list(lines) if lines else "")


def _tokenizer_body(tokenizers: pd.DataFrame) -> str:
    if tokenizers.empty:
        return h.note("No tokenizer runs in this folder (the transformer runs name their tokenizer file in the run table).")
    body = h.paragraph(
        "Each tokenizer: its kind (pca: the fitted linear stand-in of infinity_train/tokenizer/pca_tokenizer.py; bsq: the learned "
        "CNN autoencoder), where it came from, and its held-out reconstruction PSNR, after all scales and after each prefix of "
        "scales (psnr_scales_k: scales 1..k+1 decoded). The transformer runs of d use the seed-0 tokenizer of d; other seeds "
        "measure the spread."
    )
    body += h.table(tokenizers, ("run", "kind", "source"))
    spread = tokenizer_spread(tokenizers)
    if not spread.empty:
        body += h.paragraph("Held-out PSNR per d over tokenizer seeds, and its rise from the previous d against the seed spread:")
        body += h.table(spread, ("verdict",))
    return body


def _runs_of_task(runs: list[RunData], table: pd.DataFrame, task: str) -> Iterator[tuple[RunData, pd.Series]]:
    """Each run of ``task`` with its row of the results index."""
    rows = table.set_index("run")
    for run in runs:
        if run.name in rows.index and rows.at[run.name, "task"] == task:
            yield run, rows.loc[run.name]


def tokenizer_table(runs: list[RunData], table: pd.DataFrame) -> pd.DataFrame:
    out = []
    for run, index_row in _runs_of_task(runs, table, "tokenizer"):
        final = (run.summary or {}).get("final") or {}
        row = {
            "run": run.name, "d": index_row["d"], "seed": index_row["seed"], "kind": index_row["tokenizer_kind"],
            "source": index_row["tokenizer_source"], "psnr": index_row["psnr"],
        }  # fmt: skip
        row |= {f"psnr_scales_{k.rsplit('/', 1)[1]}": float(v) for k, v in sorted(final.items()) if k.startswith("val/psnr_scales/")}
        if "val/parent_bit_dependence" in final:
            row["parent_bit_dependence"] = float(final["val/parent_bit_dependence"])
        out.append(row)
    return pd.DataFrame(out)


def tokenizer_spread(tokenizers: pd.DataFrame) -> pd.DataFrame:
    if tokenizers.empty or "psnr" not in tokenizers:
        return pd.DataFrame()
    rows, previous = [], None
    for d, group in tokenizers.groupby("d"):
        values = group["psnr"].to_numpy(dtype=float)
        row = {"d": d, "seeds": len(values), "psnr_mean": float(values.mean()), "psnr_spread": float(values.max() - values.min())}
        if previous is not None:
            rise = row["psnr_mean"] - previous["psnr_mean"]
            spread = max(row["psnr_spread"], previous["psnr_spread"])
            row["rise_from_previous_d"] = rise
            row["verdict"] = "rise > seed spread" if rise > spread else "rise NOT above the seed spread"
        rows.append(row)
        previous = row
    return pd.DataFrame(rows)


def scale_accuracy_table(runs: list[RunData], table: pd.DataFrame) -> pd.DataFrame:
    """Per transformer run: final validation bit accuracy of every scale."""
    out = []
    for run, index_row in _runs_of_task(runs, table, "transformer"):
        accuracy = scale_accuracy(run)
        if accuracy.size == 0:
            continue
        out.append({"run": run.name, "d": index_row["d"], "depth": index_row["depth"], "seed": index_row["seed"],
                    **{f"scale_{k + 1}": float(v) for k, v in enumerate(accuracy)}})
    return pd.DataFrame(out)


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
