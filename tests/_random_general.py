"""Random general cells for the compiler's property test: ``Recurrent`` steps with matmuls.

A program draws 1-2 input sequences and 1-3 states of small, unequal widths, then a list of
steps over a pool of values (the inputs and states to begin with), each adding one value:

* ``lin``: ``F.linear(v, W, b)`` (with or without bias), ``v @ W`` or ``v @ W.t()``, to a new width;
* ``un``: tanh, sigmoid, relu, ``x / (1 + |x|)``;
* ``bin``: add, sub, mul of two values of one width (skipped when there is no such pair);
* ``perm``: split v in two and cat them swapped (slices, cat, and their gradients);
* ``norm``: ``v - v.mean(-1, keepdim=True)``; ``vec``: v times a per-feature parameter.

Each state's new value is ``0.5 * s + 0.5 * tanh(F.linear(last value, W_i))``: every step feeds
back, values stay bounded, and the programs stay well-conditioned (weights scaled by 1/sqrt(K)).
"""
from __future__ import annotations

import random
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

import rnnkit

__all__ = ["GeneralProgram", "RandomGeneral", "draw_program"]

UNARY = ("tanh", "sigmoid", "relu", "softsign")
BINARY = ("add", "sub", "mul")
KINDS = ("lin", "un", "bin", "perm", "norm", "vec")
LIN_FORMS = ("linear", "linear_nobias", "matmul", "matmul_t")


@dataclass(frozen=True)
class GeneralProgram:
    seqs: tuple[int, ...]
    states: tuple[int, ...]
    steps: tuple[tuple, ...]


def draw_program(rng: random.Random) -> GeneralProgram:
    seqs = tuple(rng.choice((2, 3, 5)) for _ in range(rng.randint(1, 2)))
    states = tuple(rng.choice((3, 4, 6)) for _ in range(rng.randint(1, 3)))
    widths = list(seqs) + list(states)
    steps = []
    for _ in range(rng.randint(2, 7)):
        kind = rng.choice(KINDS)
        v = rng.randrange(len(widths))
        if kind == "lin":
            out = rng.choice((3, 4, 5, 6))
            steps.append(("lin", v, rng.choice(LIN_FORMS), out))
            widths.append(out)
        elif kind == "un":
            steps.append(("un", v, rng.choice(UNARY)))
            widths.append(widths[v])
        elif kind == "bin":
            pairs = [(a, b) for a in range(len(widths)) for b in range(len(widths)) if a != b and widths[a] == widths[b]]
            if not pairs:
                continue
            a, b = rng.choice(pairs)
            steps.append(("bin", a, b, rng.choice(BINARY)))
            widths.append(widths[a])
        elif kind == "perm" and widths[v] >= 2:
            steps.append(("perm", v, rng.randint(1, widths[v] - 1)))
            widths.append(widths[v])
        elif kind == "norm" and widths[v] >= 2:
            steps.append(("norm", v))
            widths.append(widths[v])
        elif kind == "vec":
            steps.append(("vec", v))
            widths.append(widths[v])
    return GeneralProgram(seqs, states, tuple(steps))


class RandomGeneral(rnnkit.Recurrent):
    """A general cell running one program (its parameters drawn from ``seed``)."""

    def __init__(self, prog: GeneralProgram, seed: int) -> None:
        super().__init__()
        self.prog = prog
        self.sequences = tuple(f"x{i}" for i in range(len(prog.seqs)))
        self.states = tuple(f"s{i}" for i in range(len(prog.states)))
        gen = torch.Generator().manual_seed(seed)
        widths = list(prog.seqs) + list(prog.states)
        self.mats = nn.ParameterList()
        self.vecs = nn.ParameterList()
        self.slots: list[tuple[int, int]] = []  # per step: (matrix index, vector index) it uses, -1 for none
        for step in prog.steps:
            mat, vec = -1, -1
            if step[0] == "lin":
                K, O, form = widths[step[1]], step[3], step[2]
                shape = (K, O) if form == "matmul" else (O, K)
                self.mats.append(nn.Parameter(torch.randn(*shape, generator=gen) / K ** 0.5))
                mat = len(self.mats) - 1
                if form == "linear":
                    self.vecs.append(nn.Parameter(0.3 * torch.randn(O, generator=gen)))
                    vec = len(self.vecs) - 1
                widths.append(O)
            elif step[0] == "vec":
                self.vecs.append(nn.Parameter(1 + 0.3 * torch.randn(widths[step[1]], generator=gen)))
                vec = len(self.vecs) - 1
                widths.append(widths[step[1]])
            else:
                widths.append(widths[step[1]])
            self.slots.append((mat, vec))
        self.outs = nn.ParameterList(
            nn.Parameter(torch.randn(h, widths[-1], generator=gen) / widths[-1] ** 0.5) for h in prog.states)

    def state_shape(self, name: str) -> tuple[int, ...]:
        return (self.prog.states[self.states.index(name)],)

    def step(self, **kw: torch.Tensor) -> tuple[torch.Tensor, ...]:  # type: ignore[override]
        pool = [kw[n] for n in self.sequences] + [kw[n] for n in self.states]
        for step, (mat, vec) in zip(self.prog.steps, self.slots):
            v = pool[step[1]]
            if step[0] == "lin":
                W, form = self.mats[mat], step[2]
                if form == "linear":
                    out = F.linear(v, W, self.vecs[vec])
                elif form == "linear_nobias":
                    out = F.linear(v, W)
                elif form == "matmul":
                    out = v @ W
                else:
                    out = torch.matmul(v, W.t())
            elif step[0] == "un":
                op = step[2]
                out = v / (1 + v.abs()) if op == "softsign" else getattr(torch, op)(v)
            elif step[0] == "bin":
                w = pool[step[2]]
                out = v + w if step[3] == "add" else v - w if step[3] == "sub" else v * w
            elif step[0] == "perm":
                a, b = v.split([step[2], v.shape[-1] - step[2]], dim=-1)
                out = torch.cat([b, a], dim=-1)
            elif step[0] == "norm":
                out = v - v.mean(-1, keepdim=True)
            else:
                out = v * self.vecs[vec]
            pool.append(out)
        last = pool[-1]
        return tuple(0.5 * kw[n] + 0.5 * torch.tanh(F.linear(last, W)) for n, W in zip(self.states, self.outs))
