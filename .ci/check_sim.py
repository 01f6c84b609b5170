"""Checks the mesh simulator's festival figures against the targets of the mesh issues:
delivery at least 0.99 of epidemic's, bytes on air at most 0.3 of epidemic's, median latency at
most 1.2 of epidemic's, and strictly better delivery than hop-limited flooding; against the
strongest baseline (epidemic with a Bloom-filter summary), at most 0.8 of its bytes (seed 1 gives
0.75) and at most 1.1 of its median latency (issue 18's bound; seed 1 gives 1.02); and against
today's bitchat, at least its delivery at no more than its median latency."""
import json
import sys

reports = {r["strategy"].split(" ")[0]: r for r in json.load(open(sys.argv[1]))}
weft, epidemic, flood = reports["weft"], reports["epidemic"], reports["flood"]
bloom, bitchat = reports["epidemic-bloom"], reports["bitchat"]
checks = {
    "delivery >= 0.99 x epidemic": weft["delivery_ratio"] >= 0.99 * epidemic["delivery_ratio"],
    "bytes on air <= 0.3 x epidemic": weft["bytes_per_delivered"] <= 0.3 * epidemic["bytes_per_delivered"],
    "median latency <= 1.2 x epidemic": weft["latency_p50_s"] <= 1.2 * epidemic["latency_p50_s"],
    "delivery > flooding": weft["delivery_ratio"] > flood["delivery_ratio"],
    "delivery >= 0.99 x epidemic-bloom": weft["delivery_ratio"] >= 0.99 * bloom["delivery_ratio"],
    "bytes on air <= 0.8 x epidemic-bloom": weft["bytes_per_delivered"] <= 0.8 * bloom["bytes_per_delivered"],
    "median latency <= 1.1 x epidemic-bloom": weft["latency_p50_s"] <= 1.1 * bloom["latency_p50_s"],
    "delivery >= bitchat's": weft["delivery_ratio"] >= bitchat["delivery_ratio"],
    "median latency <= bitchat's": weft["latency_p50_s"] <= bitchat["latency_p50_s"],
    "each run under a minute": all(r["wall_ms"] < 60_000 for r in reports.values()),
}
for name, ok in checks.items():
    print(("ok   " if ok else "FAIL ") + name)
sys.exit(0 if all(checks.values()) else 1)
