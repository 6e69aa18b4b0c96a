"""Data pipeline speed: Tiny Shakespeare load + encode, and batch production, against naive baselines.

Targets (issue 3): load + encode Tiny Shakespeare in under 1 s; a B=64 x T=128 stream batch in
under 1 ms on average. Baselines measured in the same run: a plain-Python encoder (dict lookup
per character, as char-rnn-style scripts do) and nanoGPT's ``get_batch`` (random offsets, stack).

Usage:
    python benchmarks/bench_data.py [--corpus PATH] [--repeats 5] [--quick] [--json PATH]

The corpus defaults to Tiny Shakespeare at ``$RNNKIT_SHAKESPEARE`` or ``../shared/data`` beside
the repository; where it is absent (a clean CI machine), the embedded ``pydoc_data`` corpus is
written to a temporary file and measured instead, and the output says so.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import random
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import torch

from rnnkit.data import reber
from rnnkit.data.batching import PadCollate
from rnnkit.data.text import CharCorpus, TextStream, default_corpus

REPO = Path(__file__).resolve().parent.parent
DEFAULT_CORPUS = Path(os.environ.get("RNNKIT_SHAKESPEARE", REPO.parent / "shared" / "data" / "tinyshakespeare.txt"))
B, T = 64, 128


def timed(fn: Callable[[], object], repeats: int) -> list[float]:
    """Wall seconds of each of ``repeats`` calls (after one warm-up call)."""
    fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return times


def naive_load_encode(path: Path) -> torch.Tensor:
    text = path.read_text(encoding="utf-8")
    stoi = {c: i for i, c in enumerate(sorted(set(text)))}
    return torch.tensor([stoi[c] for c in text], dtype=torch.int64)


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--corpus", type=Path, default=None, help="text file (default: Tiny Shakespeare)")
    parser.add_argument("--repeats", type=int, default=5, help="timed repetitions of load + encode")
    parser.add_argument("--quick", action="store_true", help="fewer repetitions and epochs (a smoke run)")
    parser.add_argument("--threads", type=int, default=2, help="torch threads (default 2)")
    parser.add_argument("--json", type=Path, default=None, help="also write the results here as JSON")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        corpus_path = args.corpus or DEFAULT_CORPUS
        if args.corpus is not None and not args.corpus.exists():
            raise SystemExit(f"--corpus: {args.corpus} does not exist; pass another text file")
        if not corpus_path.exists():
            corpus_path = Path(tmp) / "pydoc_topics.txt"
            corpus_path.write_text(default_corpus(), encoding="utf-8")
            print(f"Tiny Shakespeare not found at {DEFAULT_CORPUS}: measuring the embedded pydoc corpus instead")
        return _measure(args, corpus_path)


def _measure(args: argparse.Namespace, corpus_path: Path) -> dict:
    if args.quick:
        args.repeats = min(args.repeats, 2)
    args.corpus = corpus_path

    ours = timed(lambda: CharCorpus.from_path(args.corpus), args.repeats)
    naive = timed(lambda: naive_load_encode(args.corpus), args.repeats)
    corpus = CharCorpus.from_path(args.corpus)
    assert torch.equal(corpus.ids, naive_load_encode(args.corpus))  # same ids as the baseline

    train, _ = corpus.split()
    stream = TextStream(train, B, T)
    epochs = 2 if args.quick else 20
    start = time.perf_counter()
    served = 0
    for _ in range(epochs):
        for x, y in stream:
            served += 1
    stream_batch = (time.perf_counter() - start) / served

    gen = torch.Generator().manual_seed(0)

    def nanogpt_batch() -> tuple[torch.Tensor, torch.Tensor]:
        ix = torch.randint(len(train) - T, (B,), generator=gen)
        return torch.stack([train[i : i + T] for i in ix]), torch.stack([train[i + 1 : i + 1 + T] for i in ix])

    nano_batch = statistics.fmean(timed(nanogpt_batch, served))

    fresh = reber.batches(B, seed=0, embedded=True)
    reber_batch = statistics.fmean(timed(lambda: next(fresh), 200))
    words = reber.dataset(B, seed=1, embedded=True)
    samples = [reber.word_tensors(w, embedded=True) for w in words]
    collate = PadCollate((0.0, 0.0, reber.IGNORE_INDEX))
    collate_batch = statistics.fmean(timed(lambda: collate(samples), 200))

    results = {
        "corpus": str(args.corpus),
        "corpus_chars": len(corpus.text),
        "vocab_size": len(corpus.vocab),
        "load_encode_s": {"rnnkit_mean": statistics.fmean(ours), "rnnkit_min": min(ours),
                          "naive_python_mean": statistics.fmean(naive)},
        "load_encode_speedup": statistics.fmean(naive) / statistics.fmean(ours),
        "stream_batch_ms": {"rnnkit_mean": stream_batch * 1e3, "nanogpt_get_batch_mean": nano_batch * 1e3,
                            "batches_timed": served, "B": B, "T": T},
        "stream_batch_speedup": nano_batch / stream_batch,
        "reber_embedded_fresh_batch_ms": reber_batch * 1e3,
        "pad_collate_reber_batch_ms": collate_batch * 1e3,
        "targets_met": {"load_encode_under_1s": statistics.fmean(ours) < 1.0, "batch_under_1ms": stream_batch < 1e-3},
        "python": platform.python_version(),
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
    }
    print(f"corpus {args.corpus} ({len(corpus.text):,} chars, vocab {len(corpus.vocab)})")
    print(f"load + encode     rnnkit {statistics.fmean(ours) * 1e3:8.1f} ms   naive Python "
          f"{statistics.fmean(naive) * 1e3:8.1f} ms   speedup x{results['load_encode_speedup']:.1f}   (target < 1000 ms)")
    print(f"B=64 x T=128      TextStream {stream_batch * 1e6:6.1f} us   nanoGPT get_batch {nano_batch * 1e6:6.1f} us"
          f"   speedup x{results['stream_batch_speedup']:.1f}   (target < 1000 us, {served} batches)")
    print(f"Reber embedded fresh batch of 64 words {reber_batch * 1e3:.2f} ms; "
          f"PadCollate of 64 words {collate_batch * 1e3:.3f} ms")
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        tmp = args.json.with_name(args.json.name + f".tmp{random.randrange(1 << 30)}")
        tmp.write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
        tmp.replace(args.json)  # atomic: never a half-written results file
        print(f"wrote {args.json}")
    return results


if __name__ == "__main__":
    main()
