"""How often the emergence analysis gives the planted answer: planted ladders (losslens.analysis.synthetic:
15 runs x 8 checkpoints, chance 0.25) over many seeds, one task of every shape each; prints the verdict
counts per shape and how often the true eta lies inside its interval. docs/analysis.md quotes it.

    python scripts/planted_verdicts.py [--seeds 40] [--items 500]
"""

from __future__ import annotations

import argparse
from collections import Counter

from losslens.analysis.emergence import EmergenceConfig, analyze_emergence
from losslens.analysis.synthetic import SHAPES, planted_table
from losslens.analysis.table import validate


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, default=40)
    ap.add_argument("--items", type=int, default=500)
    args = ap.parse_args(argv)
    cfg = EmergenceConfig()
    counts = {shape: Counter() for shape in SHAPES}
    covered = 0
    for seed in range(args.seeds):
        df = validate(planted_table(seed=seed, n_items=args.items))
        for shape in SHAPES:
            sub = df[df["task"] == shape].reset_index(drop=True)
            r = analyze_emergence(sub, cfg, seed=seed)
            counts[shape][r.verdict] += 1
            if shape == "emergent" and r.verdict == "emergent":
                true_eta = sub["loss"].min() + 0.5 * (sub["loss"].max() - sub["loss"].min())
                covered += r.eta_ci[0] <= true_eta <= r.eta_ci[1]
    for shape in SHAPES:
        print(f"{shape:9s} " + ", ".join(f"{v} {n}/{args.seeds}" for v, n in counts[shape].most_common()))
    print(f"true eta inside its interval: {covered}/{counts['emergent']['emergent']} emergent verdicts")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
