"""Sampling is distributed as the model says (issue 5, acceptance 3).

Oracle: a fixed-logit model, whose next-token distribution is known in closed form, and NumPy
re-implementations of temperature, top-k and the nucleus. Counts of 20,000 draws at a fixed
seed go through scipy's chi-square test; tokens a processor rules out must never appear.
"""
from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.stats import chisquare
from torch import Tensor, nn

from rnnkit.generation import Generator, keep_top_k, keep_top_p, pick, process, scale_temperature

LOGITS = torch.tensor([2.0, 1.4, 1.1, 0.6, 0.0, -0.3, -0.9, -1.6])  # (V,) distinct, no ties
V = LOGITS.numel()
DRAWS = 20_000


class FixedLogits(nn.Module):
    """A decoding model whose next-token logits never change: every draw is independent."""

    def __init__(self, logits: Tensor) -> None:
        super().__init__()
        self.register_buffer("logits", logits.clone())

    def forward(self, tokens: Tensor, state: object = None) -> tuple[Tensor, object]:
        B, T = tokens.shape
        return self.logits.expand(B, T, -1), state  # (B, T, V)

    def step(self, tokens: Tensor, state: object = None) -> tuple[Tensor, object]:
        return self.logits.expand(tokens.shape[0], -1), state  # (B, V)

    def next_log_probs(self, logits: Tensor) -> Tensor:
        return torch.log_softmax(logits, dim=-1)


def softmax_np(x: np.ndarray) -> np.ndarray:
    e = np.exp(x - x.max())
    return e / e.sum()


def oracle(temperature: float = 1.0, top_k: int | None = None, top_p: float | None = None) -> np.ndarray:
    """The distribution the sampler must follow, computed independently in NumPy (float64)."""
    logits = LOGITS.double().numpy()
    p = softmax_np(logits / temperature)
    keep = np.ones(V, dtype=bool)
    if top_k is not None:
        keep[np.argsort(-p)[top_k:]] = False
        p = np.where(keep, p, 0.0) / p[keep].sum()
    if top_p is not None:
        order = np.argsort(-p, kind="stable")
        mass_before = np.concatenate([[0.0], np.cumsum(p[order])[:-1]])
        nucleus = order[mass_before < top_p]
        keep = np.zeros(V, dtype=bool)
        keep[nucleus] = True
        p = np.where(keep, p, 0.0) / p[keep].sum()
    return p


def draw(seed: int = 0, **options: object) -> np.ndarray:
    """Token counts of DRAWS samples: 2,000 rows x 10 steps (every step is a fresh draw here)."""
    out = Generator(FixedLogits(LOGITS)).generate([0], num_samples=2000, max_length=10, seed=seed, **options)
    tokens = np.array(out.tokens)  # (2000, 10)
    assert tokens.shape == (2000, 10)
    return np.bincount(tokens.ravel(), minlength=V)


@pytest.mark.parametrize("options", [
    {}, {"temperature": 0.5}, {"temperature": 2.0}, {"top_k": 3}, {"top_k": 1}, {"top_p": 0.7}, {"top_p": 0.95},
    {"temperature": 0.7, "top_k": 5, "top_p": 0.8},
], ids=lambda o: ",".join(f"{k}={v}" for k, v in o.items()) or "plain")
def test_counts_follow_the_processed_distribution(options: dict) -> None:
    counts = draw(**options)
    expected = oracle(**options)
    assert counts.sum() == DRAWS
    assert np.all(counts[expected == 0] == 0), f"a ruled-out token was drawn: {counts} vs {expected}"
    support = expected > 0
    if support.sum() > 1:
        stat = chisquare(counts[support], DRAWS * expected[support])
        assert stat.pvalue > 1e-3, (counts, DRAWS * expected)


def test_top_k_never_leaves_the_k_largest() -> None:
    for k in (1, 2, 4):
        counts = draw(top_k=k, temperature=3.0)  # a flat distribution makes escapes likely if they could happen
        assert set(np.flatnonzero(counts)) == set(np.argsort(-LOGITS.numpy())[:k].tolist())


def test_top_p_never_leaves_the_nucleus() -> None:
    for p in (0.3, 0.6, 0.9):
        counts = draw(top_p=p, temperature=2.0)
        assert set(np.flatnonzero(counts)) == set(np.flatnonzero(oracle(temperature=2.0, top_p=p)))


def test_temperature_to_zero_is_greedy() -> None:
    counts = draw(temperature=1e-3)
    assert counts[int(LOGITS.argmax())] == DRAWS
    greedy = Generator(FixedLogits(LOGITS)).generate([0], greedy=True, max_length=10, num_samples=3)
    assert greedy.tokens == [[int(LOGITS.argmax())] * 10] * 3


def test_same_seed_same_samples_and_other_seeds_differ() -> None:
    gen = Generator(FixedLogits(LOGITS))
    a = gen.generate([0], num_samples=50, max_length=20, seed=7)
    b = gen.generate([0], num_samples=50, max_length=20, seed=7)
    c = gen.generate([0], num_samples=50, max_length=20, seed=8)
    assert a.tokens == b.tokens and a.logprobs == b.logprobs and a.seed == 7
    assert a.tokens != c.tokens
    assert len({tuple(row) for row in a.tokens}) > 40  # the rows of a batch are independent draws


def test_processors_against_numpy() -> None:
    rng = np.random.default_rng(0)
    logp = torch.log_softmax(torch.tensor(rng.normal(size=(5, 11))), dim=-1)  # (B, V)
    for t in (0.3, 1.0, 4.0):
        got = torch.softmax(scale_temperature(logp, t), -1).numpy()
        want = np.stack([softmax_np(row / t) for row in logp.numpy()])
        np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-15)
    for k in (1, 3, 11, 20):
        kept = keep_top_k(logp, k).isfinite().numpy()
        want = np.zeros_like(kept)
        for b, row in enumerate(logp.numpy()):
            want[b, np.argsort(-row)[:k]] = True
        np.testing.assert_array_equal(kept, want)
    for p in (0.05, 0.5, 0.9, 1.0):
        kept = keep_top_p(logp, p).isfinite().numpy()
        want = np.zeros_like(kept)
        for b, row in enumerate(np.exp(logp.numpy())):
            order = np.argsort(-row, kind="stable")
            before = np.concatenate([[0.0], np.cumsum(row[order])[:-1]])
            want[b, order[before < p]] = True
        np.testing.assert_array_equal(kept, want)
        # the kept entries keep their values, so the nucleus is renormalised by the softmax that follows
        np.testing.assert_array_equal(keep_top_p(logp, p).numpy()[kept], logp.numpy()[kept])


def test_constraint_mask_comes_first_and_greedy_takes_the_first_maximum() -> None:
    logp = torch.log(torch.tensor([[0.4, 0.3, 0.2, 0.1]]))
    allowed = torch.tensor([[False, True, True, True]])
    assert process(logp, top_k=1, allowed=allowed).isfinite().tolist() == [[False, True, False, False]]
    assert pick(torch.tensor([[0.0, 1.0, 1.0]]), greedy=True).tolist() == [1]


def test_constrained_draws_renormalise_over_the_allowed_tokens() -> None:
    allowed = [1, 4, 6]
    out = Generator(FixedLogits(LOGITS), constraint=lambda prefix: allowed).generate(
        [0], num_samples=2000, max_length=10, seed=3)
    counts = np.bincount(np.array(out.tokens).ravel(), minlength=V)
    p = softmax_np(LOGITS.double().numpy()[allowed])
    assert counts[[i for i in range(V) if i not in allowed]].sum() == 0
    assert chisquare(counts[allowed], DRAWS * p).pvalue > 1e-3
    # the reported log-probability is the model's own, not the renormalised one
    logp = torch.log_softmax(LOGITS.double(), -1)
    assert out.logprobs[0] == pytest.approx(float(logp[out.tokens[0]].sum()), rel=1e-6)
