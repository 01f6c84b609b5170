"""Checks the mesh simulator's festival with live data beyond every carrier's cache (2,000
messages of 4 KiB against 1 MiB caches), the cache thrash of the mesh issue (18): ours evicted
ids and fetched them back at every meeting, 10.9 times epidemic's air bytes with delivery 0.964.
Against the strongest epidemic baseline (a Bloom-filter summary, with an unbounded cache): the
same delivery, and air bytes within 2.5 times its (2.14 measured after the fix; the issue's goal
of 0.6 is not met yet, BENCHMARKS.md says why)."""
import json
import sys

weft = json.load(open(sys.argv[1]))[0]
bloom = json.load(open(sys.argv[2]))[0]
checks = {
    "delivery >= 0.99 x epidemic-bloom": weft["delivery_ratio"] >= 0.99 * bloom["delivery_ratio"],
    "air bytes <= 2.5 x epidemic-bloom": weft["bytes_per_delivered"] <= 2.5 * bloom["bytes_per_delivered"],
    "median latency <= 1.5 x epidemic-bloom": weft["latency_p50_s"] <= 1.5 * bloom["latency_p50_s"],
    "under three minutes": weft["wall_ms"] < 180_000,
}
for name, ok in checks.items():
    print(("ok   " if ok else "FAIL ") + name)
sys.exit(0 if all(checks.values()) else 1)
