"""Run every bench/bench_*.py and rewrite docs/performance.md from what they print.

`bench/run.py NAME...` runs only the benchmarks whose file name contains a NAME and keeps
the other rows of docs/performance.md as they were.

Each benchmark prints JSON objects, one per line, with: bench, metric, value, unit,
better ("higher"/"lower"), baseline (what it was compared with, measured in the same run),
baseline_value, ratio, target. Lines that are not JSON objects are shown, not parsed.
"""

import datetime as dt
import json
import os
import platform
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "docs" / "performance.md"


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


def run_one(path: Path) -> list[dict]:
    print(f"== {path.name}", flush=True)
    proc = subprocess.run([sys.executable, str(path)], capture_output=True, text=True,
                          cwd=ROOT, timeout=1800)
    results = []
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
    if proc.returncode != 0:
        print(proc.stderr[-2000:], file=sys.stderr)
        results.append({"bench": path.stem, "metric": f"{path.name} FAILED (exit "
                        f"{proc.returncode})", "value": "-", "unit": "", "baseline": "-",
                        "baseline_value": "-", "ratio": "-", "target": "-"})
    return results


def render(results: list[dict]) -> str:
    rows = "\n".join(
        f"| {r['metric']} | {r['value']} {r['unit']} | {r.get('baseline', '-')}: "
        f"{r.get('baseline_value', '-')} | {r.get('ratio', '-')} | {r.get('target', '-')} |"
        for r in results)
    when = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    return f"""# Performance

Written by `make bench` (bench/run.py) on {when}. Do not edit by hand: rerun it.

Machine: {machine()}.

Every number is compared with a baseline measured in the same run on the same machine, so
the ratio stays meaningful when the machine is slower or busier than usual.

| what | measured | baseline (same run) | ratio | target |
|---|---|---|---|---|
{rows}

How to read the ratios: for throughput ("frames/s") the ratio is ours / baseline; for times
("us", "ms") it is ours / baseline too, so lower is better there. Each benchmark's source in
`bench/` says exactly what it measures.
"""


def kept_rows(fresh: list[dict]) -> list[dict]:
    """Rows of the current docs/performance.md whose metric this (partial) run did not
    measure, as opaque results: `bench/run.py NAME` refreshes one benchmark's rows and keeps
    the others' instead of dropping them."""
    if not OUT.exists():
        return []
    measured = {r["metric"] for r in fresh}
    out = []
    for line in OUT.read_text().splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) != 5 or cells[0] in ("what", "---") or not line.startswith("| "):
            continue
        if cells[0] in measured:
            continue
        value, _, unit = cells[1].partition(" ")
        baseline, _, baseline_value = cells[2].rpartition(": ")
        out.append({"metric": cells[0], "value": value, "unit": unit,
                    "baseline": baseline or cells[2], "baseline_value": baseline_value,
                    "ratio": cells[3], "target": cells[4]})
    return out


def main() -> None:
    benches = sorted((ROOT / "bench").glob("bench_*.py"))  # every bench_*.py is registered
    partial = len(sys.argv) > 1
    if partial:
        benches = [b for b in benches if any(a in b.name for a in sys.argv[1:])]
    results = [r for b in benches for r in run_one(b)]
    if partial:
        results = kept_rows(results) + results
    OUT.write_text(render(results))
    print(f"wrote {OUT.relative_to(ROOT)} ({len(results)} results)")


if __name__ == "__main__":
    main()
