"""Decoding speed: rnnkit's Generator against a plain PyTorch sampling loop (issue 5, acceptance 4).

Model: a character language model, embedding E=128 -> 1-layer LSTM H=512 -> linear decoder
over V=65 tokens (Tiny Shakespeare's alphabet size), random weights, eval mode, fp32, CPU,
``torch.set_num_threads(2)`` (``--threads``).

Baseline, measured in the same run with the same weights: ``torch.nn.LSTM(E, 512,
batch_first=True)`` called one step at a time on a (B, 1, E) input with a carried (h, c),
plus exactly the per-token work rnnkit does: the embedding lookup, the linear decoder,
``log_softmax``, ``softmax`` + ``torch.multinomial`` with a seeded generator, the ``gather``
of the chosen token's log-probability, and appending both to lists. The prompt is read with
one whole-sequence call in both. Both run under ``torch.inference_mode``. With the same seed,
both loops draw the same tokens (checked below), so the work is the same.

Figures:
- per-token latency at batch 1, and throughput (tokens/s) at batch 64, medians of interleaved
  repeats: the mean cost per token, and its 10th percentile ("p10", the cost of a token that
  nothing else got in the way of, which is what to read on a shared, loaded machine);
- the ratio rnnkit / baseline (the target is <= 1.2), the median of the per-repeat ratios;
- ``--clock cpu --threads 1`` times the CPU time of the decoding thread instead of wall time: on
  a shared machine it leaves out the time spent waiting for a core, which wall time cannot.
- O(1) per token: in a 10,000-token run at batch 1, the per-token time of tokens 10-509 against
  tokens 9,501-10,000 (``--window 500``; the 10,000th token must cost what the 10th does), median
  and p10 of each window; the median of ``--long-runs`` runs per side.

Usage:
    python benchmarks/bench_generation.py [--tokens 1000] [--repeats 9] [--long 10000] [--long-runs 3]
                                          [--window 500] [--threads 2] [--clock wall|cpu] [--json PATH]
"""
from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
from collections.abc import Callable

import torch
from torch import Tensor, nn

from rnnkit.generation import Generator
from rnnkit.models import LanguageModel, LanguageModelConfig, RNNConfig

V, E, H = 65, 128, 512
CLOCK = [time.perf_counter]  # --clock cpu: time.thread_time, the CPU time of the (only) decoding thread
PROMPT = torch.tensor([[1, 2, 3, 4, 5, 6, 7, 8]])  # (1, P)


class TorchLoop:
    """The plain PyTorch baseline: nn.Embedding -> nn.LSTM one step at a time -> nn.Linear, sampled."""

    def __init__(self, lm: LanguageModel) -> None:
        self.embedding = nn.Embedding(V, E)
        self.lstm = lm.rnn.to_torch()  # the same weights, as a torch.nn.LSTM(E, H, batch_first=True)
        self.decoder = nn.Linear(H, V)
        self.embedding.load_state_dict(lm.embedding.state_dict())
        self.decoder.load_state_dict(lm.decoder.state_dict())
        for module in (self.embedding, self.lstm, self.decoder):
            module.eval()

    @torch.inference_mode()
    def generate(self, batch: int, length: int, seed: int, on_token: Callable[[], None] | None = None) -> Tensor:
        generator = torch.Generator().manual_seed(seed)
        y, (h, c) = self.lstm(self.embedding(PROMPT))  # (1, P, H): the prompt, once
        index = torch.zeros(batch, dtype=torch.int64)
        h, c = h.index_select(1, index), c.index_select(1, index)  # (1, B, H)
        logits = self.decoder(y[:, -1]).index_select(0, index)  # (B, V)
        tokens, logprobs = [], []
        for t in range(length):
            logp = torch.log_softmax(logits, dim=-1)  # (B, V)
            token = torch.multinomial(torch.softmax(logp, dim=-1), 1, generator=generator)[:, 0]  # (B,)
            tokens.append(token)
            logprobs.append(logp.gather(1, token.unsqueeze(1)).squeeze(1))
            if on_token is not None:
                on_token()
            if t + 1 < length:
                y, (h, c) = self.lstm(self.embedding(token).unsqueeze(1), (h, c))  # (B, 1, H)
                logits = self.decoder(y[:, 0])  # (B, V)
        return torch.stack(tokens, dim=1)  # (B, T)


def rnnkit_generate(generator: Generator, batch: int, length: int, seed: int,
                    on_token: Callable[..., None] | None = None) -> Tensor:
    out = generator.generate(PROMPT[0], max_length=length, num_samples=batch, seed=seed, on_token=on_token)
    return torch.tensor(out.tokens)  # (B, T)


def per_token_profile(run: Callable[[Callable[..., None]], object]) -> list[float]:
    """Seconds between consecutive tokens of one run (timestamps taken by the per-token callback)."""
    stamps: list[float] = []

    def stamp(*_: object) -> None:
        stamps.append(CLOCK[0]())

    run(stamp)
    return [b - a for a, b in zip(stamps, stamps[1:])]


def p10(values: list[float]) -> float:
    """The 10th percentile: the cost of a token when nothing else got in the way."""
    return statistics.quantiles(values, n=10)[0]


def compare(lm_gen: Generator, loop: TorchLoop, batch: int, length: int, repeats: int) -> dict[str, float]:
    """Seconds per decoding step of rnnkit and of the baseline (mean and 10th percentile), and the ratios.

    The machine may be shared, so the two run in ABBA order within each repeat and the ratios are
    taken per repeat (load that changes slowly hits both sides alike); the figures are medians
    over the repeats. Both sides take a timestamp per token through the same kind of callback.
    """
    rnnkit_generate(lm_gen, batch, 50, 0)  # warm-up
    loop.generate(batch, 50, 0)
    rows: dict[str, list[float]] = {k: [] for k in ("ours", "theirs", "ratio", "ours_p10", "theirs_p10", "ratio_p10")}
    for r in range(repeats):
        a1 = per_token_profile(lambda cb: rnnkit_generate(lm_gen, batch, length, r, cb))
        b1 = per_token_profile(lambda cb: loop.generate(batch, length, r, cb))
        b2 = per_token_profile(lambda cb: loop.generate(batch, length, r, cb))
        a2 = per_token_profile(lambda cb: rnnkit_generate(lm_gen, batch, length, r, cb))
        ours, theirs = statistics.fmean(a1 + a2), statistics.fmean(b1 + b2)
        ours_p10, theirs_p10 = p10(a1 + a2), p10(b1 + b2)
        for key, value in (("ours", ours), ("theirs", theirs), ("ratio", ours / theirs), ("ours_p10", ours_p10),
                           ("theirs_p10", theirs_p10), ("ratio_p10", ours_p10 / theirs_p10)):
            rows[key].append(value)
    return {key: statistics.median(values) for key, values in rows.items()}


def window(deltas: list[float], start: int, size: int) -> list[float]:
    return deltas[start - 2: start - 2 + size]  # deltas[k] is the cost of token k + 2 (token 1 comes from priming)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tokens", type=int, default=1000, help="tokens per timed run at batch 1 (a quarter at 64)")
    parser.add_argument("--repeats", type=int, default=9, help="interleaved ABBA repeats per measurement")
    parser.add_argument("--long", type=int, default=10_000, help="length of the O(1) runs")
    parser.add_argument("--long-runs", type=int, default=3, help="O(1) runs per side (median of their ratios)")
    parser.add_argument("--window", type=int, default=500, help="tokens per O(1) window (from token 10, and ending "
                                                                "at the last token)")
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads (default 2, the CI machine's cores)")
    parser.add_argument("--clock", choices=("wall", "cpu"), default="wall",
                        help="wall: elapsed time; cpu: CPU time of the decoding thread, which ignores time spent "
                             "waiting for a core on a shared machine (needs --threads 1)")
    parser.add_argument("--json", default=None, help="write the figures here")
    args = parser.parse_args()
    if args.clock == "cpu":
        if args.threads != 1:
            parser.error("--clock cpu measures the main thread only, so it needs --threads 1")
        CLOCK[0] = time.thread_time
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    lm = LanguageModel(LanguageModelConfig(vocab_size=V, embedding_size=E, dropout=0.0,
                                           rnn=RNNConfig(cell="lstm", hidden_size=H, num_layers=1))).eval()
    generator = Generator(lm)
    loop = TorchLoop(lm)
    same = torch.equal(rnnkit_generate(generator, 4, 200, 123), loop.generate(4, 200, 123))
    print(f"same tokens as the baseline at the same seed (B=4, 200 tokens): {same}")

    results: dict[str, float | bool | str] = {"same_tokens": same, "torch": torch.__version__, "clock": args.clock,
                                              "threads": args.threads,
                                              "machine": platform.processor() or platform.machine()}
    print(f"\nLSTM E={E} H={H} V={V}, fp32, CPU, {torch.get_num_threads()} threads, {args.clock} clock, "
          f"torch {torch.__version__}")
    print(f"{'per decoding step':<22} {'rnnkit':>10} {'torch loop':>10} {'ratio':>6}   "
          f"{'rnnkit p10':>10} {'torch p10':>10} {'ratio':>6}")
    for batch in (1, 64):
        f = compare(generator, loop, batch, args.tokens if batch == 1 else args.tokens // 4, args.repeats)
        for key, value in f.items():
            results[f"b{batch}_{key}" + ("" if key.startswith("ratio") else "_us")] = \
                value if key.startswith("ratio") else value * 1e6
        label = "latency B=1 (us/token)" if batch == 1 else f"throughput B={batch} (tok/s)"
        show = (lambda x: f"{x * 1e6:10.1f}") if batch == 1 else (lambda x: f"{batch / x:10.0f}")
        print(f"{label:<22} {show(f['ours'])} {show(f['theirs'])} {f['ratio']:6.3f}   "
              f"{show(f['ours_p10'])} {show(f['theirs_p10'])} {f['ratio_p10']:6.3f}")

    print(f"\nO(1), B=1, us/token, windows of {args.window} tokens from token 10 and up to token {args.long:,}")
    print(f"{'':<22} {'early':>10} {'late':>10} {'ratio':>6}   {'early p10':>10} {'late p10':>10} {'ratio':>6}")
    profiles: dict[str, list[list[float]]] = {"rnnkit": [], "torch": []}
    for r in range(args.long_runs):  # alternate the two so that load changes hit both
        for name, run in (("rnnkit", lambda cb: rnnkit_generate(generator, 1, args.long, r, cb)),
                          ("torch", lambda cb: loop.generate(1, args.long, r, cb))):
            deltas = per_token_profile(run)
            early, late = window(deltas, 10, args.window), window(deltas, args.long - args.window + 1, args.window)
            profiles[name].append([statistics.median(early), statistics.median(late), p10(early), p10(late)])
    for name, runs in profiles.items():
        early, late, early10, late10 = (statistics.median(run[i] for run in runs) for i in range(4))
        ratio = statistics.median(run[1] / run[0] for run in runs)
        ratio10 = statistics.median(run[3] / run[2] for run in runs)
        results.update({f"{name}_token10_us": early * 1e6, f"{name}_token{args.long}_us": late * 1e6,
                        f"{name}_late_over_early": ratio, f"{name}_late_over_early_p10": ratio10})
        print(f"{name:<22} {early * 1e6:10.1f} {late * 1e6:10.1f} {ratio:6.3f}   "
              f"{early10 * 1e6:10.1f} {late10 * 1e6:10.1f} {ratio10:6.3f}")
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump(results, f, indent=1)


if __name__ == "__main__":
    main()
