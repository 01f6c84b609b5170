"""Checks the stadium at a quarter of its size (1,250 people at the same density, seed 1): the
crowd that made the simulator's all-pairs scan and per-second counting slow. Delivery at least
0.99 (issue 18's goal; the full 5,000 deliver 1.000, docs/BENCHMARKS.md) within two minutes of
simulator time on this machine's build (it takes about 40 s here)."""
import json
import sys

(weft,) = json.load(open(sys.argv[1]))
checks = {
    "delivery >= 0.99": weft["delivery_ratio"] >= 0.99,
    "median latency under 10 s": weft["latency_p50_s"] < 10,
    "run under two minutes": weft["wall_ms"] < 120_000,
}
for name, ok in checks.items():
    print(("ok   " if ok else "FAIL ") + name)
sys.exit(0 if all(checks.values()) else 1)
