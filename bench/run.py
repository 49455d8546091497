"""Run every bench/bench_*.py and rewrite docs/performance.md from what they print.

Each benchmark prints JSON objects, one per line, with: bench, metric, value, unit,
better ("higher"/"lower"), baseline (what it was compared with, measured in the same run),
baseline_value, ratio, target, and optionally ``series`` (a list of objects shown as a
table of their own, e.g. RSS every 100,000 requests). Lines that are not JSON objects are
shown, not parsed; lines starting with "info:" are kept under the table.

Only the part of docs/performance.md between the ``bench:begin`` and ``bench:end`` markers is
generated; everything outside them (sections written by hand, or by other tools) is kept.
``python bench/run.py soak`` runs only the matching benchmarks and keeps the other
benchmarks' rows from the previous run (their results are stored in the generated part).
"""

import datetime as dt
import json
import os
import platform
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "docs" / "performance.md"
BEGIN = "<!-- bench:begin (written by `make bench`: do not edit by hand, rerun it) -->"
END = "<!-- bench:end -->"
STORE = re.compile(r"<!-- bench:results (.*?) -->", re.S)

HEAD = """# Performance

"""


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return (f"{cpu}, {os.cpu_count()} cores, {platform.system()} {platform.release()}, "
            f"Python {platform.python_version()}")


def run_one(path: Path) -> dict:
    """{"results": [...], "info": [...], "when": ..., "machine": ...} for one benchmark."""
    print(f"== {path.name}", flush=True)
    proc = subprocess.run([sys.executable, str(path)], capture_output=True, text=True,
                          cwd=ROOT, timeout=5400)
    results, info = [], []
    for line in proc.stdout.splitlines():
        try:
            obj = json.loads(line)
        except ValueError:
            obj = None
        if isinstance(obj, dict) and "metric" in obj:
            results.append(obj)
            print(f"   {obj['metric']}: {obj['value']} {obj['unit']} (ratio {obj.get('ratio')})")
        else:
            print("   " + line)
            if line.startswith("info:"):
                info.append(line[5:].strip())
    if proc.returncode != 0:
        print(proc.stderr[-2000:], file=sys.stderr)
        results.append({"bench": path.stem, "metric": f"{path.name} FAILED (exit "
                        f"{proc.returncode})", "value": "-", "unit": "", "baseline": "-",
                        "baseline_value": "-", "ratio": "-", "target": "-"})
    when = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    return {"results": results, "info": info, "when": when, "machine": machine()}


def _row(r: dict) -> str:
    return (f"| {r['metric']} | {r['value']} {r['unit']} | {r.get('baseline', '-')}: "
            f"{r.get('baseline_value', '-')} | {r.get('ratio', '-')} | {r.get('target', '-')} |")


def _series(r: dict) -> str:
    rows = r["series"]
    cols = list(rows[0])
    out = [f"{r['metric']}:", "", "| " + " | ".join(c.replace("_", " ") for c in cols) + " |",
           "|" + "---|" * len(cols)]
    out += ["| " + " | ".join(f"{row[c]:,}" if isinstance(row[c], int) else str(row[c])
                              for c in cols) + " |" for row in rows]
    return "\n".join(out)


def render_block(runs: dict[str, dict]) -> str:
    names = sorted(runs)
    rows = "\n".join(_row(r) for n in names for r in runs[n]["results"])
    when = "; ".join(f"{n} {runs[n]['when']}" for n in names)
    machines = sorted({runs[n]["machine"] for n in names})
    series = "\n\n".join(_series(r) for n in names for r in runs[n]["results"] if r.get("series"))
    info = "\n".join(f"- {n}: {line}" for n in names for line in runs[n]["info"])
    stored = json.dumps(runs, separators=(",", ":")).replace("--", "\\u002d\\u002d")
    return f"""{BEGIN}
Written by `make bench` (bench/run.py); runs: {when}.

Machine: {"; ".join(machines)}.

Every number is compared with a baseline measured in the same run on the same machine, so
the ratio stays meaningful when the machine is slower or busier than usual.

| what | measured | baseline (same run) | ratio | target |
|---|---|---|---|---|
{rows}

How to read the ratios: for throughput ("frames/s") the ratio is ours / baseline; for times
("us", "ms"), sizes and bytes it is ours / baseline too, so lower is better there. Each
benchmark's source in `bench/` says exactly what it measures.

{series}

Notes printed by the benchmarks:

{info}
<!-- bench:results {stored} -->
{END}"""


def merge(previous: str, runs: dict[str, dict]) -> str:
    """The document with its generated block replaced; text outside the markers kept."""
    if BEGIN in previous and END in previous:
        before, rest = previous.split(BEGIN, 1)
        old, after = rest.split(END, 1)
        m = STORE.search(old)
        if m:
            try:
                kept = json.loads(m.group(1).replace("\\u002d\\u002d", "--"))
            except ValueError:
                kept = {}
            runs = {**kept, **runs}
        return before + render_block(runs) + after
    return HEAD + render_block(runs) + "\n"


def main() -> None:
    benches = sorted((ROOT / "bench").glob("bench_*.py"))
    if len(sys.argv) > 1:
        benches = [b for b in benches if any(a in b.name for a in sys.argv[1:])]
    runs = {b.stem: run_one(b) for b in benches}
    previous = OUT.read_text() if OUT.exists() else ""
    OUT.write_text(merge(previous, runs))
    n = sum(len(r["results"]) for r in runs.values())
    print(f"wrote {OUT.relative_to(ROOT)} ({n} results from {len(runs)} benchmarks)")


if __name__ == "__main__":
    main()
