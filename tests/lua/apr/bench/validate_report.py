"""validate_report.py — checks an `apr bench` report with Debian's
python3-jsonschema against docs/bench.schema.json, and its CSV against the
JSON (same runs, same figures), for tests/lua/apr/cmd/bench_spec.lua.

    python3 validate_report.py SCHEMA REPORT.json [RUNS.csv]

Prints "ok" and exits 0, or prints each problem and exits 1.
"""
import csv
import json
import math
import sys

import jsonschema


def main():
    schema = json.load(open(sys.argv[1]))
    text = open(sys.argv[2]).read()
    # NaN/Infinity are not JSON: the strict parser must take the file.
    doc = json.loads(text, parse_constant=lambda c: (_ for _ in ()).throw(ValueError("non-JSON constant " + c)))
    problems = []
    validator = jsonschema.Draft202012Validator(schema)
    for e in sorted(validator.iter_errors(doc), key=lambda e: list(e.path)):
        problems.append("schema: %s: %s" % ("/".join(map(str, e.path)), e.message[:300]))
    if len(sys.argv) > 3:
        with open(sys.argv[3], newline="") as f:
            rows = list(csv.DictReader(f))
        runs = [(r["system"], r["concurrency"], run) for r in doc["results"] for run in r["runs"]]
        if len(rows) != len(runs):
            problems.append("csv: %d rows for %d runs" % (len(rows), len(runs)))
        for row, (system, c, run) in zip(rows, runs):
            if row["system"] != system or int(row["concurrency"]) != c or int(row["run"]) != run["run"]:
                problems.append("csv: row %s/%s/%s does not match run %s/%s/%s" % (
                    row["system"], row["concurrency"], row["run"], system, c, run["run"]))
            for key in ("ttft_s", "decode_tps", "throughput_tps", "itl_p99_ms", "tokens"):
                want, got = run[key], row[key]
                if want is None:
                    if got != "":
                        problems.append("csv: %s should be empty, is %s" % (key, got))
                elif not isinstance(want, (int, float)) or got == "" or not math.isclose(float(got), want, rel_tol=1e-12):
                    problems.append("csv: %s is %r, the JSON has %r" % (key, got, want))
    if problems:
        print("\n".join(problems[:40]))
        sys.exit(1)
    print("ok")


if __name__ == "__main__":
    main()
