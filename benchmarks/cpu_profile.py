"""Where fastgru's CPU training time goes: each part of one layer's forward + backward timed alone.

python benchmarks/cpu_profile.py  (prints a table; medians of 5 runs, the sizes of benchmarks/cpu.py)
"""

import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

import torch  # noqa: E402

from fastgru.apps.bench import SIZES, machine_description  # noqa: E402
from fastgru.backends import cpu  # noqa: E402


def median_ms(fn, reps=5):
    fn()
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times) * 1e3


def profile_size(T: int, B: int, I: int, H: int) -> list[float]:
    """Milliseconds of: projection, forward loop (saving), backward loop, dW_hh, dW_ih, dx."""
    x = torch.randn(T, B, I)
    w_ih, w_hh, bias = torch.randn(3 * H, I) * 0.1, torch.randn(3 * H, H) * 0.1, torch.randn(3 * H)
    h0 = torch.randn(B, H)
    gi = cpu.project(x, w_ih, bias)
    buf, gates = cpu.recurrence_forward(gi, h0, w_hh, bias, None, True, False, True)
    dbuf = torch.randn_like(buf)
    dg, hp, x2 = torch.randn(T * B, 3 * H), torch.randn(T * B, H), x.reshape(T * B, I)
    return [
        median_ms(lambda: cpu.project(x, w_ih, bias)),
        median_ms(lambda: cpu.recurrence_forward(gi, h0, w_hh, bias, None, True, False, True)),
        median_ms(lambda: cpu.recurrence_backward(dbuf, buf, gates, w_hh, None, True, False)),
        median_ms(lambda: dg.t() @ hp),
        median_ms(lambda: dg.t() @ x2),
        median_ms(lambda: dg @ w_ih),
    ]


if __name__ == "__main__":
    if not cpu.is_available():
        sys.exit(f"the fused CPU kernel is unavailable: {cpu.load_error()}")
    torch.manual_seed(0)
    a, b = torch.randn(2048, 2048), torch.randn(2048, 2048)
    print(machine_description())
    print(f"sgemm 2048^3: {2 * 2048**3 / median_ms(lambda: a @ b) / 1e6:.0f} GFLOP/s")
    print("| T, B, I, H | projection | forward loop (saving) | backward loop | dW_hh | dW_ih | dx | sum ms |")
    print("|---|---|---|---|---|---|---|---|")
    for T, B, I, H in SIZES:
        parts = profile_size(T, B, I, H)
        print(f"| {T}, {B}, {I}, {H} | " + " | ".join(f"{p:.1f}" for p in parts) + f" | {sum(parts):.1f} |")
