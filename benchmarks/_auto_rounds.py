"""The timing protocol of benchmarks/calibrate_auto.py: interleaved rounds and their ratios.

A case's calls run in rounds, each call once per round, the order rotating from round to round
(:func:`rotated_rounds`); how many rounds is a :class:`Rounds`. :func:`compare` turns the rounds
into the ratios the table and the check read, and :func:`pool` merges the rounds of the same
case measured in several processes, so that a check can be judged on all of them at once.

    >>> rounds = [{"fused": 1.0, "generic": 2.0, "auto": 1.0}, {"fused": 1.1, "auto": 1.0}]
    >>> compare(rounds)["best"], compare(rounds)["auto_over_best"]  # round 2 dropped the slow backend
    ('fused', 0.9545454545454546)
"""
from __future__ import annotations

import statistics
import time
from collections.abc import Sequence
from dataclasses import dataclass

__all__ = ["AUTOS", "Rounds", "balanced_orders", "compare", "pool", "rotated_rounds", "spread"]

# The check's auto calls: "auto" runs on the same layer object as fused and generic (the engine is
# switched per call), "auto_own" on a layer of its own built from the same weights.
AUTOS = {"auto": "auto_over_best", "auto_own": "auto_own_over_best"}


@dataclass(frozen=True)
class Rounds:
    """How many rounds a case gets: at least ``least``; more while the timed calls have taken less than
    ``target_s`` in all, up to ``most``. Where the two backends are far apart (every round's
    fused / generic beyond ``clear``) after ``least`` rounds, more rounds decide nothing about
    which is faster: without an auto call the case stops there; with one (the check), the slower
    backend leaves the rounds and auto keeps being timed against the faster one."""

    least: int
    most: int
    target_s: float
    clear: float = 1.5


def _clear(done: list[dict[str, float]], clear: float) -> str | None:
    """The faster backend when every round so far has the two ``clear``-times apart, else None."""
    ratios = [r["fused"] / r["generic"] for r in done if "fused" in r and "generic" in r]
    if ratios and min(ratios) > clear:
        return "generic"
    if ratios and max(ratios) < 1.0 / clear:
        return "fused"
    return None


def balanced_orders(n: int) -> list[list[int]]:
    """Orders of ``n`` calls in which each call directly follows every other call equally often (a
    Williams design: ``n`` orders for even ``n``, ``2n`` for odd): a call runs faster after a call
    of its own backend (warm caches), so a fixed cyclic order, where ``auto`` always follows the
    same neighbour, biases auto / that neighbour.

        >>> balanced_orders(4)
        [[0, 1, 3, 2], [1, 2, 0, 3], [2, 3, 1, 0], [3, 0, 2, 1]]
        >>> balanced_orders(2), len(balanced_orders(3))
        ([[0, 1], [1, 0]], 6)
    """
    first = [0] + [(k + 1) // 2 if k % 2 else n - k // 2 for k in range(1, n)]
    orders = [[(i + j) % n for i in first] for j in range(n)]
    return orders + [o[::-1] for o in orders] if n % 2 else orders


def rotated_rounds(calls: dict, rounds: Rounds | int) -> list[dict[str, float]]:
    """Rounds each timing every call once, in orders that change from round to round so that
    each call follows every other equally often (:func:`balanced_orders`; an allocator or cache
    left warm or cold by the previous call would otherwise bias one of them). A round lacks the
    slower backend once it has been dropped (:class:`Rounds`)."""
    if isinstance(rounds, int):
        rounds = Rounds(rounds, rounds, 0.0)
    names = list(calls)
    timed_auto = any(name in AUTOS for name in names)
    done: list[dict[str, float]] = []
    spent = 0.0
    while len(done) < rounds.most:
        if len(done) >= rounds.least:
            faster = _clear(done, rounds.clear) if {"fused", "generic"} <= set(names) else None
            if spent >= rounds.target_s or (faster and not timed_auto):
                break
            if faster:
                names.remove("generic" if faster == "fused" else "fused")
        orders = balanced_orders(len(names))
        order = [names[i] for i in orders[len(done) % len(orders)]]
        times = {}
        for name in order:
            start = time.perf_counter()
            calls[name]()
            times[name] = time.perf_counter() - start
        spent += sum(times.values())
        done.append(times)
    return done


def compare(rounds: Sequence[dict[str, float]]) -> dict:
    """The ratios of a case's rounds, each a median over rounds of a ratio within one round (slow
    drift of the machine cancels): ``fused_over_generic`` over the rounds that timed both (< 1:
    fused is the faster, ``best``); per auto call (:data:`AUTOS`), auto / the faster backend
    (``auto_over_best``: the check; ``auto_own_over_best``: the same for the auto layer of its
    own); and ``auto_over_round_min``, auto / the faster of the two in each round, the earlier
    statistic, which reads a near-tie as a loss: the smaller of two noisy times is below either
    backend's typical time (two tied backends with 5% noise per call: about 1.03x for an auto
    that runs one of them).

        >>> rounds = [{"fused": 1.0, "generic": 1.5, "auto": 1.02}, {"fused": 1.1, "generic": 1.4, "auto": 1.1},
        ...           {"fused": 0.9, "generic": 1.6, "auto": 1.0}]
        >>> out = compare(rounds)
        >>> out["best"], out["auto_over_best"], out["auto_over_round_min"]
        ('fused', 1.02, 1.02)
    """
    both = [r for r in rounds if "fused" in r and "generic" in r]
    out: dict = {"fused_over_generic": statistics.median(r["fused"] / r["generic"] for r in both)}
    best = out["best"] = "fused" if out["fused_over_generic"] < 1.0 else "generic"
    for name, label in AUTOS.items():
        timed = [r[name] / r[best] for r in rounds if name in r and best in r]
        if timed:
            out[label] = statistics.median(timed)
    if both and "auto" in both[0]:
        out["auto_over_round_min"] = statistics.median(r["auto"] / min(r["fused"], r["generic"]) for r in both)
    return out


def spread(times: Sequence[float]) -> float:
    """Interquartile range over the median of one backend's per-call times."""
    if len(times) < 3:
        return (max(times) - min(times)) / statistics.median(times)
    q = statistics.quantiles(times, n=4, method="inclusive")
    return (q[2] - q[0]) / statistics.median(times)


CASE = ("regime", "cell", "dtype", "lengths", "mode")


def pool(runs: Sequence[Sequence[dict]]) -> list[dict]:
    """One case per (regime, cell, dtype, lengths, mode) from the cases of several check runs
    (separate processes): their rounds (``round_s``) pooled, the medians, spreads and ratios
    recomputed over all of them; ``runs`` says how many processes, ``per_run`` each one's own
    ``auto_over_best``. Cases in the order of their first appearance.

        >>> one = {"regime": "r", "cell": "lstm", "dtype": "fp32", "lengths": False, "mode": "fwd",
        ...        "auto_backend": "fused", "auto_over_best": 1.1,
        ...        "round_s": [{"fused": 1.0, "generic": 2.0, "auto": 1.1}]}
        >>> two = {**one, "auto_over_best": 1.0, "round_s": [{"fused": 1.0, "generic": 2.0, "auto": 1.0}] * 2}
        >>> [(c["rounds"], c["auto_over_best"], c["per_run"]) for c in pool([[one], [two]])]
        [(3, 1.0, [1.1, 1.0])]
    """
    groups: dict[tuple, list[dict]] = {}
    for run in runs:
        for case in run:
            groups.setdefault(tuple(case[k] for k in CASE), []).append(case)
    pooled = []
    for cases in groups.values():
        rounds = [r for c in cases for r in c["round_s"]]
        names = sorted({n for r in rounds for n in r})
        times = {n: [r[n] for r in rounds if n in r] for n in names}
        backends = sorted({c.get("auto_backend", "") for c in cases})
        pooled.append({**cases[0], "runs": len(cases), "rounds": len(rounds), "round_s": rounds,
                       "median_s": {n: statistics.median(t) for n, t in times.items()},
                       "spread": {n: spread(t) for n, t in times.items()},
                       "auto_backend": "/".join(backends),
                       "per_run": [c.get("auto_over_best") for c in cases], **compare(rounds)})
    return pooled
