"""Run every benchmark with one command: the RNN suite, then the other ``bench_*.py`` scripts.

Each script runs in its own Python process (``sys.executable``), so one script's threads, seeds,
allocator state or crash cannot touch another's figures; its tables stream to this console as it
runs, and its JSON is collected into one file. ``--quick`` is passed to each script that takes it;
a script without ``--quick`` gets the small settings listed in ``QUICK_FALLBACK``.

Usage:
    python benchmarks/run.py                      # everything, < 10 min on 2 quiet cores
    python benchmarks/run.py --quick --json out.json   # every code path, tiny sizes, < 1 min (CI)
    python benchmarks/run.py --only rnn,trainer --threads 2
"""
from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import _harness as harness  # noqa: E402

__all__ = ["QUICK_FALLBACK", "child_env", "discover", "main", "script_command"]

FIRST = "rnn"  # the main suite runs first; the rest in name order
QUICK_FALLBACK: dict[str, list[str]] = {  # small settings for scripts that have no --quick of their own
    "data": ["--repeats", "1"],
    "generation": ["--tokens", "50", "--repeats", "1", "--long", "400", "--long-runs", "1"],
}


def discover() -> dict[str, Path]:
    """``benchmarks/bench_<name>.py`` -> {name: path}, the RNN suite first."""
    found = {p.stem.removeprefix("bench_"): p for p in sorted(HERE.glob("bench_*.py"))}
    return dict(sorted(found.items(), key=lambda item: (item[0] != FIRST, item[0])))


def _declares(source: str, flag: str) -> bool:
    """True if the script's own parser declares ``flag`` (not merely mentions it, e.g. in a command it runs)."""
    return re.search(r"add_argument\(\s*[\"']" + re.escape(flag) + r"[\"']", source) is not None


def script_command(path: Path, quick: bool, threads: int | None, json_path: Path | None) -> list[str]:
    """The command line for one script, built from the options its source declares."""
    source = path.read_text(encoding="utf-8")
    args = [sys.executable, str(path)]
    if quick:
        if _declares(source, "--quick"):
            args.append("--quick")
        else:
            fallback = QUICK_FALLBACK.get(path.stem.removeprefix("bench_"), [])
            i = 0
            while i < len(fallback):  # keep only the flags this version of the script has
                flag, value = fallback[i], fallback[i + 1]
                if _declares(source, flag):
                    args += [flag, value]
                i += 2
    if threads is not None and _declares(source, "--threads"):
        args += ["--threads", str(threads)]
    if json_path is not None and _declares(source, "--json"):
        args += ["--json", str(json_path)]
    return args


def child_env(quick: bool) -> dict[str, str]:
    """The scripts' environment. Quick mode makes idle OpenMP threads sleep instead of spin.

    With libgomp's default spin-waiting, a 2-thread process on a machine whose cores are busy
    with other work loses whole scheduler slices at every parallel region (a 1 ms oneDNN call
    was measured at 200-600 ms), and the quick run, there only to show that every path works,
    would take minutes instead of seconds. Full runs keep the default a user has.
    """
    env = dict(os.environ)
    if quick:
        env.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    return env


def run_script(name: str, command: list[str], timeout: float, env: dict[str, str] | None = None
               ) -> tuple[int, float, str]:
    """Run one script, echoing its output line by line. Returns (exit code, seconds, output)."""
    print(f"\n{'=' * 100}\n== {name}: {' '.join(command[1:])}\n{'=' * 100}", flush=True)
    start = time.perf_counter()
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, bufsize=1,
                            cwd=HERE.parent, env=env)
    timer = threading.Timer(timeout, proc.kill)
    timer.start()
    lines = []
    try:
        for line in proc.stdout or ():
            print(line, end="", flush=True)
            lines.append(line)
        code = proc.wait()
    finally:
        timer.cancel()
    seconds = time.perf_counter() - start
    if code != 0 and seconds >= timeout:
        print(f"!! {name}: killed after the {timeout:.0f} s timeout", flush=True)
    return code, seconds, "".join(lines)


def parse_args(argv: Sequence[str] | None, names: Sequence[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="tiny sizes and few repeats in every script (< 1 min)")
    p.add_argument("--json", type=Path, default=None, help="write every script's results into this one file")
    p.add_argument("--only", default=",".join(names), help=f"comma-separated subset of: {','.join(names)}")
    p.add_argument("--threads", type=int, default=2, help="torch threads, for scripts that take --threads (default 2)")
    p.add_argument("--timeout", type=float, default=None,
                   help="seconds before a hung script is killed (default 3600, quick 600); the time "
                        "targets are checked separately")
    args = p.parse_args(argv)
    chosen = [n.strip() for n in args.only.split(",") if n.strip()]
    bad = [n for n in chosen if n not in names]
    if bad or not chosen:
        p.error(f"--only: expected a comma-separated subset of {','.join(names)}, but got {args.only!r}. "
                f"Fix: e.g. --only {names[0]}")
    args.only = chosen
    return args


def main(argv: Sequence[str] | None = None) -> int:
    """Run the selected scripts; return 0 if every one exited cleanly, else 1."""
    scripts = discover()
    args = parse_args(argv, list(scripts))
    timeout = args.timeout or (600.0 if args.quick else 3600.0)
    start = time.perf_counter()
    combined: dict[str, object] = {"quick": args.quick, "threads": args.threads, "scripts": {},
                                   "omp_wait_policy": child_env(args.quick).get("OMP_WAIT_POLICY")}
    with tempfile.TemporaryDirectory(prefix="rnnkit-bench-") as tmp:
        for name in args.only:
            out = Path(tmp) / f"{name}.json"
            command = script_command(scripts[name], args.quick, args.threads, out)
            code, seconds, output = run_script(name, command, timeout, child_env(args.quick))
            entry: dict[str, object] = {"command": command[1:], "returncode": code, "wall_s": seconds}
            try:
                entry["results"] = json.loads(out.read_text(encoding="utf-8"))
            except (OSError, ValueError):  # no --json, or a script that failed: no (valid) file
                pass
            if code != 0 or "results" not in entry:  # keep what it printed
                entry["output"] = output[-20000:]
            combined["scripts"][name] = entry  # type: ignore[index]
    wall = time.perf_counter() - start
    combined["wall_s"] = wall
    combined["machine"] = harness.machine_info()
    limit = 60.0 if args.quick else 600.0
    failed = [n for n, e in combined["scripts"].items() if e["returncode"] != 0]  # type: ignore[union-attr]
    print(f"\n{'=' * 100}\nsummary" + (" (quick)" if args.quick else ""))
    rows = [[n, f"{e['wall_s']:.1f}", "ok" if e["returncode"] == 0 else f"FAILED (exit {e['returncode']})"]
            for n, e in combined["scripts"].items()]  # type: ignore[union-attr]
    print(harness.format_table(["script", "seconds", "status"], rows))
    selected = "the selected scripts" if len(args.only) < len(scripts) else "the whole suite"
    print(f"{'PASS' if wall < limit else 'MISS'}  {selected} ran in {wall:.1f} s (target < {limit:.0f} s)")
    if args.json is not None:
        print(f"wrote {harness.write_json(args.json, combined)}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
