"""CPU benchmark of the core issue: torch.nn.GRU vs fastgru.nn.GRU, written to BENCHMARKS.md.

Run on a quiet machine (check `uptime`): python benchmarks/cpu.py [--reps 7] [--output BENCHMARKS.md]
"""

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from fastgru import bench  # noqa: E402

if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=7, help="timed runs per side (median reported)")
    parser.add_argument("--output", default=str(Path(__file__).resolve().parents[1] / "BENCHMARKS.md"))
    args = parser.parse_args()
    bench.run(reps=args.reps, output=args.output, command=f"python benchmarks/cpu.py --reps {args.reps}")
