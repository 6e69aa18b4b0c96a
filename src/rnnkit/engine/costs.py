"""The measured cost table behind ``engine="auto"``: fused or generic, whichever ran faster here.

``benchmarks/calibrate_auto.py`` times the fused backend (PyTorch's native kernels) against the
generic engine on this machine and writes ``auto_costs.json`` beside this module; the package
ships it, so nothing is timed at import or at call time. A call is looked up by its key

    (cell kind, dtype, device type, batch-size bucket, lengths or not, fwd or fwd+bwd)

and ``auto`` takes the backend with the smaller measured median. A row measured in several
passes (``calibrate_auto.py --passes N``, or runs merged with ``--from``; each pass a separate
process) keeps each pass's pair of medians, and ``auto`` takes the backend that loses least in
the typical pass: the smaller median over the passes of ``time / min(fused, generic)`` (its
regret), so that a near-tie whose order flips from run to run goes to the backend that loses
least over the runs, and one process where a backend ran in a slow mode does not outvote the
others (with two passes the median is the mean: the backend whose worst pass is closer to that
pass's faster one). When neither backend is ever more than ``TIE`` (3%) behind, either pick is
close to the faster one, and ``auto`` takes the steadier backend: the smaller ``spread`` (the
interquartile range of its per-call times over their median, the worst pass's), so that one
slow mode of a backend does not decide a near-tie. ``dtype`` is
``"autocast-bfloat16"`` for a float32 call under a CPU bfloat16 autocast (both backends then
compute in bfloat16 and float32 mixes that the plain float32 rows do not measure). Keys the
table lacks fall back to the nearest measured batch bucket of the same cell, dtype, device,
lengths and mode, and otherwise to fused. CUDA devices always keep fused: cuDNN is fast and
nothing was measured on a GPU here.

    >>> from rnnkit.engine.costs import batch_bucket, cost_key
    >>> batch_bucket(1), batch_bucket(3), batch_bucket(32)
    ('1', '2-4', '17-64')
    >>> cost_key("gru", "float32", "cpu", 32, True, True)
    'gru|float32|cpu|17-64|lengths|fwd+bwd'
"""
from __future__ import annotations

import json
import statistics
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

__all__ = ["BUCKETS", "Measured", "TABLE_PATH", "TIE", "batch_bucket", "cost_key", "load_table", "lookup"]

TABLE_PATH = Path(__file__).with_name("auto_costs.json")
BUCKETS = (("1", 1, 1), ("2-4", 2, 4), ("5-16", 5, 16), ("17-64", 17, 64), ("65+", 65, 1 << 62))
TIE = 0.03  # both backends within 3% of the faster in every pass: a near-tie, the steadier wins
KIND_ROWS = {"rnn_tanh": "rnn", "rnn_relu": "rnn", "lstm": "lstm", "gru": "gru"}  # relu shares tanh's rows


@dataclass(frozen=True)
class Measured:
    """One row of the table: the medians (seconds) of both backends at a measured size.

    ``passes``: (fused_s, generic_s) of each measured pass (one pass: the medians themselves).
    ``spread``: (fused, generic) interquartile range / median of the per-call times, the worst
    pass's; empty when the table does not record it.

        >>> Measured("k", 1.0, 1.1, "", True).faster
        'fused'
        >>> Measured("k", 1.0, 1.02, "", True, ((1.0, 1.02), (1.2, 1.03))).faster  # fused 17% behind once
        'generic'
        >>> Measured("k", 1.0, 1.02, "", True, ((1.0, 1.02), (1.01, 1.0)), (0.4, 0.05)).faster  # a near-tie
        'generic'
    """

    key: str
    fused_s: float
    generic_s: float
    size: str  # the measured (B, T, I, H), e.g. "B=32 T=256 I=128 H=256"
    exact: bool  # False when the row comes from the nearest bucket
    passes: tuple[tuple[float, float], ...] = ()
    spread: tuple[float, float] | tuple[()] = ()

    @property
    def regret(self) -> dict[str, float]:
        """Per backend, its worst time over the passes relative to that pass's faster backend."""
        passes = self.passes or ((self.fused_s, self.generic_s),)
        return {name: max(p[i] / min(p) for p in passes) for i, name in enumerate(("fused", "generic"))}

    @property
    def mean_regret(self) -> dict[str, float]:
        """Per backend, the mean over the passes of its time relative to that pass's faster
        backend: what a run in a new process can expect to lose. With two passes it orders the
        backends as ``regret`` does."""
        passes = self.passes or ((self.fused_s, self.generic_s),)
        return {name: sum(p[i] / min(p) for p in passes) / len(passes) for i, name in enumerate(("fused", "generic"))}

    @property
    def median_regret(self) -> dict[str, float]:
        """Per backend, the median over the passes of its time relative to that pass's faster
        backend: what a run in a new process typically loses. A pass where one backend ran in a
        slow mode moves it no further than any other pass on the same side."""
        passes = self.passes or ((self.fused_s, self.generic_s),)
        return {name: statistics.median(p[i] / min(p) for p in passes) for i, name in enumerate(("fused", "generic"))}

    @property
    def faster(self) -> str:
        """The backend auto takes: at a near-tie (both worst-pass regrets <= 1 + ``TIE``) the
        smaller spread; otherwise the smaller median regret, then the smaller mean regret; at a
        tie, the smaller median time.

            >>> three = ((1.0, 1.3), (1.6, 1.0), (1.0, 1.25))  # fused 1.6x behind once, ahead twice
            >>> m = Measured("k", 1.0, 1.25, "", True, three)
            >>> m.faster, round(m.regret["fused"], 2), m.median_regret, round(m.mean_regret["fused"], 2)
            ('fused', 1.6, {'fused': 1.0, 'generic': 1.25}, 1.2)
        """
        r = self.regret
        if self.spread and max(r.values()) <= 1.0 + TIE and self.spread[0] != self.spread[1]:
            return "generic" if self.spread[1] < self.spread[0] else "fused"
        for regrets in (self.median_regret, self.mean_regret):
            if regrets["fused"] != regrets["generic"]:
                return "generic" if regrets["generic"] < regrets["fused"] else "fused"
        return "generic" if self.generic_s < self.fused_s else "fused"


def batch_bucket(batch: int) -> str:
    for name, low, high in BUCKETS:
        if low <= batch <= high:
            return name
    return BUCKETS[0][0]  # B = 0: an empty batch, any backend


def cost_key(kind: str, dtype: str, device: str, batch: int, lengths: bool, backward: bool) -> str:
    """The table key of a call (``kind`` is ``rnnkit.engine.fused_kind(cell)``, ``dtype`` e.g. "float32")."""
    return "|".join((KIND_ROWS.get(kind, kind), dtype, device, batch_bucket(batch),
                     "lengths" if lengths else "full", "fwd+bwd" if backward else "fwd"))


@lru_cache(maxsize=4)
def load_table(path: str = str(TABLE_PATH)) -> dict:
    """The shipped table ({"meta": ..., "rows": {key: {...}}}); empty rows if the file is absent."""
    try:
        return json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return {"meta": {}, "rows": {}}


def lookup(key: str, table: dict | None = None) -> Measured | None:
    """The measured row for ``key``, else the nearest batch bucket's, else None."""
    rows = (table if table is not None else load_table())["rows"]
    parts = key.split("|")
    names = [b[0] for b in BUCKETS]
    want = names.index(parts[3]) if parts[3] in names else 0
    for distance in range(len(names)):
        for index in (want + distance, want - distance):  # larger bucket first at a tie
            if 0 <= index < len(names):
                probe = "|".join(parts[:3] + [names[index]] + parts[4:])
                row = rows.get(probe)
                if row is not None:
                    passes = tuple((float(f), float(g)) for f, g in row.get("passes", ()))
                    spread = row.get("spread", {})
                    pair: tuple[float, float] | tuple[()] = (
                        (float(spread["fused"]), float(spread["generic"])) if spread else ())
                    return Measured(key, float(row["fused_s"]), float(row["generic_s"]), str(row.get("size", "")),
                                    distance == 0, passes, pair)
    return None
