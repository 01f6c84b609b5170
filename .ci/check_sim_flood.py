"""Checks the festival with a flooder (one node writing junk ten times a second, a topic of its
own for each envelope; seed 1) against the festival without it (the same walks and messages):
honest delivery unchanged, its median at most 1.4 times, and the bytes honest nodes send at most
5 times theirs (4.6 measured; issue 18's goal is 2 and is not met, docs/BENCHMARKS.md). Without
the topics' budgets, the review measured 30 times."""
import json
import sys

(flood,) = json.load(open(sys.argv[1]))
weft = next(r for r in json.load(open(sys.argv[2])) if r["strategy"] == "weft")
honest = flood["bytes_on_air"] - flood["flooder_bytes"]
print(f"honest bytes {honest:,} against {weft['bytes_on_air']:,} without the flooder "
      f"({honest / weft['bytes_on_air']:.2f}x); the flooder's own {flood['flooder_bytes']:,}")
checks = {
    "delivery as without the flooder": flood["delivery_ratio"] >= weft["delivery_ratio"] - 0.001,
    "median latency at most 1.4x": flood["latency_p50_s"] <= 1.4 * weft["latency_p50_s"],
    "honest nodes' bytes at most 5x": honest <= 5 * weft["bytes_on_air"],
}
for name, ok in checks.items():
    print(("ok   " if ok else "FAIL ") + name)
sys.exit(0 if all(checks.values()) else 1)
