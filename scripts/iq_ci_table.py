"""How wide is the 95% CI of d' for a given number of realisations N?  Prints a table (FBP images of the simulated
CCT189 study, LG-CHO, 10 readers, 200 bootstrap resamplings), one row per N and dose, mean over the four inserts.

    PYTHONPATH=. python scripts/iq_ci_table.py --n 20 40 100 200 --doses 0.25 1.0
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from ldct_clip.evaluation.iq_study import IQSettings, run_iq_study


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--n", type=int, nargs="+", default=[20, 40, 100, 200])
    ap.add_argument("--doses", type=float, nargs="+", default=[0.25, 1.0])
    args = ap.parse_args()
    print("| N per class | dose | insert | d' mean | d' SD over readers | 95% CI | CI width | seconds |")
    print("|---|---|---|---|---|---|---|---|")
    for n in args.n:
        t0 = time.perf_counter()
        study = run_iq_study(IQSettings(doses=args.doses, realisations=n, ttf_realisations=1, classical=()),
                             progress=False)
        sec = time.perf_counter() - t0
        for r in study.lcd:
            print(f"| {n} | {100 * r['dose']:g}% | {r['insert_diameter_mm']:g} mm / {r['insert_hu']:+g} HU | "
                  f"{r['dprime_mean']:.2f} | {r['dprime_sd']:.2f} | {r['dprime_ci95_low']:.2f}-{r['dprime_ci95_high']:.2f}"
                  f" | {r['dprime_ci95_high'] - r['dprime_ci95_low']:.2f} | {sec:.0f} |")
        widths = [r["dprime_ci95_high"] - r["dprime_ci95_low"] for r in study.lcd]
        print(f"| {n} | all | mean CI width | | | | {np.mean(widths):.2f} | |")


if __name__ == "__main__":
    main()
