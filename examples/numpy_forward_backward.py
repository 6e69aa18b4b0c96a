"""Seed 004, forward and backward by hand: the NumPy reference against rnnkit and autograd, then clipping.

``rnnkit.reference`` is a pure-NumPy forward and hand-written backward (no autodiff) of the
vanilla RNN, the LSTM and the GRU, in the style of seed 004's ``rnn_step_forward`` /
``rnn_step_backward``, looped over time with masks. For each cell this script
1. draws weights in torch.nn's layout, runs the NumPy forward and backward of
   ``loss = sum(y * G)`` for a fixed random G, over a batch of sequences of different lengths;
2. runs the same weights through ``torch.nn`` (autograd) and through rnnkit on both engines;
3. prints the largest relative difference of the outputs and of every gradient.
Then it clips the gradients to a global norm of 1, as ``torch.nn.utils.clip_grad_norm_`` does,
and plots how the gradient ||dL/dh_t|| fades back through time for each cell (seed 004's
vanishing-gradient picture), using the reference's per-step gradient hook.

    python examples/numpy_forward_backward.py [--out runs/examples/numpy] [--quick]
"""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch

import rnnkit
from rnnkit import reference as ref

TORCH = {"rnn_tanh": torch.nn.RNN, "lstm": torch.nn.LSTM, "gru": torch.nn.GRU}
KEYS = ("W_ih", "W_hh", "b_ih", "b_hh")  # torch's flat-weight order per direction


def rel(a: np.ndarray, b: np.ndarray) -> float:
    """Largest |a - b| relative to the largest |b| (one number per tensor)."""
    return float(np.abs(a - b).max() / max(np.abs(b).max(), 1e-300))


def check(cell: str, rng: np.random.Generator, B: int = 3, T: int = 7, F: int = 4, H: int = 5) -> dict[str, float]:
    p = ref.random_params(cell, F, H, rng)
    x, G = rng.normal(size=(B, T, F)), rng.normal(size=(B, T, H))  # input (B, T, F), upstream dL/dy (B, T, H)
    lengths = np.array([T, T - 3, 1])
    mask = np.arange(T)[None, :] < lengths[:, None]  # (B, T) True on real steps
    y, _, cache = ref.sequence_forward(cell, p, x, None, mask=mask)
    grads = ref.sequence_backward(G, None, cache)  # hand-written BPTT
    worst = {}
    module = TORCH[cell](F, H, batch_first=True).double()
    with torch.no_grad():
        for w, key in zip(module.all_weights[0], KEYS):
            w.copy_(torch.from_numpy(p[key]))
    for name, net in (("torch.nn", module), ("rnnkit fused", rnnkit.from_torch(module, engine="fused")),
                      ("rnnkit generic", rnnkit.from_torch(module, engine="generic"))):
        xt = torch.tensor(x, requires_grad=True)
        if name == "torch.nn":  # torch.nn reads padded batches through a PackedSequence
            packed = torch.nn.utils.rnn.pack_padded_sequence(xt, torch.tensor(lengths), batch_first=True, enforce_sorted=False)
            yt = torch.nn.utils.rnn.pad_packed_sequence(net(packed)[0], batch_first=True, total_length=T)[0]
            weights = net.all_weights[0]
        else:
            yt = net(xt, lengths=torch.tensor(lengths))[0]  # (B, T, H)
            weights = net.flat_weights()
        (yt * torch.tensor(G)).sum().backward()  # autograd's BPTT
        diffs = [rel(yt.detach().numpy(), y), rel(xt.grad.numpy(), grads["dx"])]
        diffs += [rel(w.grad.numpy(), grads["d" + key]) for w, key in zip(weights, KEYS)]
        worst[name] = max(diffs)
    return worst


def fading(cell: str, rng: np.random.Generator, T: int) -> list[float]:
    """||dL/dh_t|| for t = T-1 .. 0 when only the last output is scored: gradients through time."""
    p = ref.random_params(cell, 4, 32, rng)
    y, _, cache = ref.sequence_forward(cell, p, rng.normal(size=(1, T, 4)), None)
    dy = np.zeros_like(y)
    dy[:, -1] = 1.0
    norms: list[float] = []
    ref.sequence_backward(dy, None, cache, state_grad_hook=lambda t, d: norms.append(float(np.linalg.norm(d[0]))))
    return norms[::-1]  # index t


def main(argv: list[str] | None = None) -> dict[str, float]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default="runs/examples/numpy", help="folder for numpy_gradients.png")
    parser.add_argument("--quick", action="store_true", help="shorter sequences for the fading-gradient plot")
    args = parser.parse_args(argv)
    rng = np.random.default_rng(0)
    worst_all = 0.0
    for cell in TORCH:
        worst = check(cell, rng)
        worst_all = max(worst_all, *worst.values())
        print(f"{cell:>8}: NumPy reference vs " + ", ".join(f"{k} {v:.1e}" for k, v in worst.items()) + " (max relative difference)")
    print(f"largest relative difference over outputs and gradients: {worst_all:.1e} (float64)")
    p = ref.random_params("lstm", 4, 5, rng)
    y, _, cache = ref.sequence_forward("lstm", p, 10 * rng.normal(size=(2, 30, 4)), None)
    grads = ref.sequence_backward(100 * np.ones_like(y), None, cache)
    clipped, norm = ref.clip_grad_norm(grads, max_norm=1.0)
    after = np.sqrt(sum(np.sum(clipped[k] ** 2) for k in ref.parameter_keys(clipped)))
    params = [torch.nn.Parameter(torch.zeros(grads[k].shape, dtype=torch.float64)) for k in ref.parameter_keys(grads)]
    for param, k in zip(params, ref.parameter_keys(grads)):  # the same clip with torch, as an oracle
        param.grad = torch.from_numpy(grads[k].copy())
    torch_norm = float(torch.nn.utils.clip_grad_norm_(params, 1.0))
    clip_diff = max(rel(clipped[k], q.grad.numpy()) for q, k in zip(params, ref.parameter_keys(grads)))
    print(f"gradient clipping: global norm {norm:.4g} -> {after:.6f}; torch.nn.utils.clip_grad_norm_ saw "
          f"{torch_norm:.4g}, clipped gradients differ by {clip_diff:.1e} (relative)")
    T = 30 if args.quick else 100
    curves = {cell: fading(cell, np.random.default_rng(1), T) for cell in TORCH}
    for cell, norms in curves.items():
        print(f"{cell:>8}: ||dL/dh_t|| at t = {T - 1}, {T // 2}, 0: " + ", ".join(f"{norms[t]:.2e}" for t in (T - 1, T // 2, 0)))
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(7, 4))
    for cell, norms in curves.items():
        ax.semilogy(range(T), norms, label=cell)
    ax.set(xlabel="time step t", ylabel="||dL/dh_t||", title="Gradient of the last output through time (NumPy reference)")
    ax.legend()
    fig.tight_layout()
    fig.savefig(out / "numpy_gradients.png", dpi=100)
    print(f"figure: {out / 'numpy_gradients.png'}")
    return {"max_relative_difference": worst_all, "clipped_norm": after}


if __name__ == "__main__":
    main()
