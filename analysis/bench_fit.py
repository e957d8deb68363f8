"""Benchmark: the full 4,500-start Chinchilla approach-3 fit on ~250 synthetic runs.

    python -m analysis.bench_fit [--points 250] [--noise 0.01] [--seed 0] [--bootstrap 0]
"""
from __future__ import annotations

import argparse
import time
from collections.abc import Sequence

from analysis.chinchilla import PARAMETERS, fit_chinchilla
from analysis.synthetic import CHINCHILLA_TRUTH, chinchilla_runs


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m analysis.bench_fit", description=__doc__.splitlines()[0])
    parser.add_argument("--points", type=int, default=250)
    parser.add_argument("--noise", type=float, default=0.01, help="std of the multiplicative log-normal noise")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--bootstrap", type=int, default=0)
    args = parser.parse_args(argv)

    runs = chinchilla_runs(args.points, noise=args.noise, seed=args.seed)
    clock = time.perf_counter()
    fit = fit_chinchilla(runs["params"], runs["tokens"], runs["loss"], n_bootstrap=args.bootstrap, seed=args.seed)
    seconds = time.perf_counter() - clock

    print(f"approach 3: {fit.n_points} points, {fit.n_starts:,} starts (all optimized), {args.bootstrap} bootstrap refits")
    print(f"wall time: {seconds:.2f} s   ({fit.n_reached_best:,} starts reached the best objective {fit.objective:.6g})")
    print(f"  {'parameter':<10} {'true':>10} {'fitted':>10}" + ("   95% CI" if args.bootstrap else ""))
    for name in PARAMETERS:
        ci = fit.intervals.get(name)
        interval = f"   [{ci[0]:.4g}, {ci[1]:.4g}]" if ci else ""
        print(f"  {name:<10} {CHINCHILLA_TRUTH[name]:>10.4g} {getattr(fit, name):>10.4g}{interval}")
    truth = CHINCHILLA_TRUTH
    print(f"  {'a=b/(a+b)':<10} {truth['beta'] / (truth['alpha'] + truth['beta']):>10.4g} {fit.params_exponent:>10.4g}")
    print(f"R^2 {fit.goodness.r2:.5f} (loss), {fit.goodness.r2_log:.5f} (log-loss)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
