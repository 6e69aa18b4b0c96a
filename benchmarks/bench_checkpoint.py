"""Loading an untrusted checkpoint: a crafted config is refused for less than an honest load costs.

A Reber tagger checkpoint (LSTM, hidden 128: ~280 KB of weights, as in issue 11) is loaded as
saved (the baseline), then with its config forged to hidden 2,000 x 3 layers (a model ~1,100x
the weights' size) and the manifest re-hashed, so only the shape check can refuse it. Each load
runs in a fresh process; the figures are the median wall time of ``rnnkit.load`` and the growth
of the process's peak resident memory (``getrusage``) across that call.

Usage:
    python benchmarks/bench_checkpoint.py [--repeats 5] [--quick] [--json PATH]
"""
from __future__ import annotations

import argparse
import hashlib
import json
import statistics
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

import rnnkit
from rnnkit.models import RNNConfig, SequenceTagger, TaggerConfig

HIDDEN, CRAFTED_HIDDEN, CRAFTED_LAYERS = 128, 2000, 3

_PROBE = textwrap.dedent("""
    import json, resource, sys, time
    import torch
    torch.set_num_threads({threads})
    import rnnkit
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    start = time.perf_counter()
    try:
        rnnkit.load(sys.argv[1])
        outcome = "loaded"
    except rnnkit.CheckpointError as error:
        outcome = "CheckpointError: " + str(error)[:120]
    seconds = time.perf_counter() - start
    growth = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 - before
    print(json.dumps({{"seconds": seconds, "peak_growth": growth, "outcome": outcome}}))
""")


def forge(folder: Path) -> None:
    """Set the stored config to the crafted size and make the manifest consistent again."""
    manifest = json.loads((folder / "manifest.json").read_text())
    entry = manifest["files"]["model"]
    doc = json.loads((folder / entry["name"]).read_text())
    doc["config"]["rnn"]["hidden_size"], doc["config"]["rnn"]["num_layers"] = CRAFTED_HIDDEN, CRAFTED_LAYERS
    data = json.dumps(doc).encode()
    (folder / entry["name"]).write_bytes(data)
    entry["size"], entry["sha256"] = len(data), hashlib.sha256(data).hexdigest()
    (folder / "manifest.json").write_text(json.dumps(manifest))


def probe(folder: Path, repeats: int, threads: int) -> dict:
    runs = []
    for _ in range(repeats):
        out = subprocess.run([sys.executable, "-c", _PROBE.format(threads=threads), str(folder)], check=True,
                             capture_output=True, text=True)
        runs.append(json.loads(out.stdout))
    return {"seconds": statistics.median(r["seconds"] for r in runs),
            "peak_growth_mb": statistics.median(r["peak_growth"] for r in runs) / 2 ** 20,
            "outcome": runs[0]["outcome"]}


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=5, help="fresh processes per case (median)")
    parser.add_argument("--quick", action="store_true", help="one process per case (a smoke run)")
    parser.add_argument("--threads", type=int, default=2, help="torch threads (default 2)")
    parser.add_argument("--json", type=Path, default=None, help="also write the results here as JSON")
    args = parser.parse_args(argv)
    repeats = 1 if args.quick else args.repeats
    with tempfile.TemporaryDirectory() as tmp:
        honest = rnnkit.save(SequenceTagger(TaggerConfig(rnn=RNNConfig(hidden_size=HIDDEN))), Path(tmp) / "honest")
        crafted = rnnkit.save(SequenceTagger(TaggerConfig(rnn=RNNConfig(hidden_size=HIDDEN))), Path(tmp) / "crafted")
        forge(crafted)
        weights = next(crafted.glob("weights-*")).stat().st_size
        asked = 4 * sum(p.numel() for p in _meta_tagger().parameters())
        results = {"weights_bytes": weights, "crafted_model_bytes": asked, "ratio_to_weights": asked / weights,
                   "honest": probe(honest, repeats, args.threads), "crafted": probe(crafted, repeats, args.threads)}
    h, c = results["honest"], results["crafted"]
    print(f"weights file {weights / 1024:.0f} KB; the crafted config asks for {asked / 2 ** 20:.0f} MB "
          f"({asked / weights:,.0f}x)")
    print(f"honest load: {h['seconds'] * 1e3:.1f} ms, peak +{h['peak_growth_mb']:.1f} MB ({h['outcome']})")
    print(f"crafted load: {c['seconds'] * 1e3:.1f} ms, peak +{c['peak_growth_mb']:.1f} MB ({c['outcome'][:60]}...)")
    print(f"crafted / honest time: {c['seconds'] / h['seconds']:.2f} [{repeats} fresh processes each, median]")
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))
    return results


def _meta_tagger():
    import torch

    with torch.device("meta"):
        return SequenceTagger(TaggerConfig(rnn=RNNConfig(hidden_size=CRAFTED_HIDDEN, num_layers=CRAFTED_LAYERS)))


if __name__ == "__main__":
    main()
