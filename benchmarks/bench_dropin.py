"""Drop-in speed: the same module code on torch.nn and on rnnkit.nn, CPU, training steps.

For GRU, tanh-RNN and LSTM, with a padded batch (no lengths) and with a PackedSequence of
ragged lengths (30% of the rows shorter), it times one training step (forward + backward) of
the same code written against ``torch.nn``, then with ``rnnkit.nn`` swapped in (engine
"auto", and "generic" forced). A last case times a training step of an encoder-decoder
(embedding, packed bidirectional LSTM, GRU decoder, classifier head) before and after
``rnnkit.accelerate(model)``. Ratios are torch.nn's median time over rnnkit's, measured
round-robin in the same run (> 1: rnnkit is faster).

    python benchmarks/bench_dropin.py [--quick] [--threads 2] [--json results/dropin.json]
"""
from __future__ import annotations

import argparse
import copy
import functools
import sys
import types
from pathlib import Path

import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _harness import format_table, machine_info, time_interleaved, write_json  # noqa: E402

import rnnkit  # noqa: E402
from rnnkit import nn as rnn_nn  # noqa: E402


def namespace(engine: str | None) -> object:
    """torch.nn (None), or rnnkit.nn with an engine."""
    if engine is None:
        return torch.nn
    return types.SimpleNamespace(**{k: functools.partial(getattr(rnn_nn, k), engine=engine)
                                    for k in ("RNN", "LSTM", "GRU")})


def ragged(B: int, T: int) -> torch.Tensor:
    """Lengths: the first row T, 30% of the rows between T/2 and T, the rest T."""
    g = torch.Generator().manual_seed(0)
    lengths = torch.full((B,), T)
    short = torch.randperm(B - 1, generator=g)[: max(1, int(0.3 * B))] + 1
    lengths[short] = torch.randint(T // 2, T, (len(short),), generator=g)
    return lengths


def layer_step(ns: object, kind: str, x: torch.Tensor, lengths: torch.Tensor | None, H: int):
    """The module code under test: build once, return a training-step closure."""
    torch.manual_seed(0)
    rnn = getattr(ns, kind)(x.shape[2], H)  # sequence-first, torch's defaults

    def step() -> None:
        if lengths is None:
            y, _ = rnn(x)
        else:
            out, _ = rnn(pack_padded_sequence(x, lengths, enforce_sorted=False))
            y, _ = pad_packed_sequence(out)
        y.pow(2).mean().backward()

    return step


class EncoderDecoder(nn.Module):
    def __init__(self, vocab: int = 64, emb: int = 64, hidden: int = 128, classes: int = 16) -> None:
        super().__init__()
        self.embed = nn.Embedding(vocab, emb)
        self.encoder = nn.LSTM(emb, hidden, bidirectional=True)
        self.decoder = nn.GRU(emb, hidden)
        self.bridge = nn.Linear(2 * hidden, hidden)
        self.head = nn.Linear(hidden, classes)

    def forward(self, src: torch.Tensor, lengths: torch.Tensor, tgt: torch.Tensor) -> torch.Tensor:
        _, (h, _) = self.encoder(pack_padded_sequence(self.embed(src), lengths, enforce_sorted=False))
        h0 = torch.tanh(self.bridge(torch.cat([h[0], h[1]], dim=1))).unsqueeze(0)  # (1, B, H)
        y, _ = self.decoder(self.embed(tgt), h0)  # (U, B, H)
        return self.head(y)  # (U, B, C)


def model_step(model: nn.Module, batch: tuple[torch.Tensor, ...]):
    opt = torch.optim.SGD(model.parameters(), lr=1e-3)
    src, lengths, tgt, labels = batch

    def step() -> None:
        opt.zero_grad()
        logits = model(src, lengths, tgt)
        nn.functional.cross_entropy(logits.flatten(0, 1), labels.flatten()).backward()
        opt.step()

    return step


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="small sizes, 3 repeats (smoke test)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    B, T, F, H = (4, 8, 8, 16) if args.quick else (32, 100, 64, 128)
    repeats = 3 if args.quick else 7
    x = torch.randn(T, B, F)
    lens = ragged(B, T)
    rows, results = [], []
    for kind in ("GRU", "RNN", "LSTM"):
        for label, lengths in (("padded", None), ("packed", lens)):
            fns = {name: layer_step(namespace(engine), kind, x, lengths, H)
                   for name, engine in (("torch.nn", None), ("rnnkit auto", "auto"), ("rnnkit generic", "generic"))}
            t = time_interleaved(fns, repeats=repeats, warmup=1)
            base = t["torch.nn"].median
            rows.append([kind, label, f"{base * 1e3:.1f}", f"{t['rnnkit auto'].median * 1e3:.1f}",
                         f"{base / t['rnnkit auto'].median:.2f}x", f"{t['rnnkit generic'].median * 1e3:.1f}",
                         f"{base / t['rnnkit generic'].median:.2f}x"])
            results.append({"kind": kind, "input": label, **{k: v.median for k, v in t.items()}})
    g = torch.Generator().manual_seed(1)
    U = T // 2
    batch = (torch.randint(0, 64, (T, B), generator=g), lens, torch.randint(0, 64, (U, B), generator=g),
             torch.randint(0, 16, (U, B), generator=g))
    torch.manual_seed(0)
    original = EncoderDecoder(hidden=H)
    auto, generic = copy.deepcopy(original), copy.deepcopy(original)
    rnnkit.accelerate(auto)
    rnnkit.accelerate(generic, engine="generic")
    t = time_interleaved({"torch.nn": model_step(original, batch), "rnnkit auto": model_step(auto, batch),
                          "rnnkit generic": model_step(generic, batch)}, repeats=repeats, warmup=1)
    base = t["torch.nn"].median
    rows.append(["enc-dec", "accelerate", f"{base * 1e3:.1f}", f"{t['rnnkit auto'].median * 1e3:.1f}",
                 f"{base / t['rnnkit auto'].median:.2f}x", f"{t['rnnkit generic'].median * 1e3:.1f}",
                 f"{base / t['rnnkit generic'].median:.2f}x"])
    results.append({"kind": "encoder-decoder", "input": "accelerate", **{k: v.median for k, v in t.items()}})
    headers = ["module", "input", "torch.nn ms", "rnnkit auto ms", "speed-up", "rnnkit generic ms", "speed-up"]
    print(f"training step (forward + backward), B={B} T={T} F={F} H={H}, {args.threads} threads, median of {repeats}")
    print(format_table(headers, rows))
    out = {"machine": machine_info(), "sizes": {"B": B, "T": T, "F": F, "H": H}, "repeats": repeats, "results": results}
    if args.json is not None:
        write_json(args.json, out)
    return out


if __name__ == "__main__":
    main()
