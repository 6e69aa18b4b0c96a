"""``Stream``: a layer or model that keeps its state between calls (Keras's ``stateful=True``, done right).

Each call feeds the next chunk of every row's stream and carries the final state into the next
call, detached, so the gradient stops at the chunk boundary (truncated BPTT across calls).
Rows restart on demand: ``stream.reset(rows)`` before a call, or ``reset=`` (B,) or (B, T) in
the call (``rnnkit.engine.reset``), while the other rows carry on.

    >>> import torch, rnnkit
    >>> stream = rnnkit.Stream(rnnkit.GRU(3, 8))
    >>> x = torch.randn(2, 12, 3)
    >>> y1 = stream(x[:, :5])
    >>> y2 = stream(x[:, 5:])                 # continues from the state after step 4
    >>> y, _ = stream.module(x)                # the whole sequence at once
    >>> torch.allclose(torch.cat([y1, y2], 1), y, atol=1e-6)
    True
    >>> stream.reset([1])                     # row 1 starts a new sequence at the next call
    >>> tuple(stream(x[:, :4]).shape)         # (B, T, H)
    (2, 4, 8)
"""
from __future__ import annotations

import inspect
from typing import Any, Sequence

import torch
from torch import Tensor, nn

from rnnkit.errors import bad_argument

__all__ = ["Stream"]


def _detach(state: Any) -> Any:
    if isinstance(state, Tensor):
        return state.detach()
    if isinstance(state, (tuple, list)):
        return type(state)(_detach(s) for s in state)
    return state


def _state_by_name(module: Any) -> bool:
    """True when ``module``'s forward names a ``state`` parameter that is not its second, as
    ``SequenceTagger.forward(tokens, lengths=None, state=None)``: the carried state then goes by
    name, not second (where the tagger would read it as ``lengths``)."""
    forward = getattr(module, "forward", module)
    try:
        names = list(inspect.signature(forward).parameters)
    except (TypeError, ValueError):  # a builtin or C callable: no signature to read
        return False
    return "state" in names and names.index("state") != 1


def _move(state: Any, like: Tensor) -> Any:
    """The carried state on ``like``'s device and (floating) dtype: it follows ``module.to(...)``."""
    if isinstance(state, Tensor):
        if state.device == like.device and (state.dtype == like.dtype or not state.is_floating_point()):
            return state
        return state.to(device=like.device, dtype=like.dtype if state.is_floating_point() else state.dtype)
    if isinstance(state, (tuple, list)):
        return type(state)(_move(s, like) for s in state)
    return state


class Stream:
    """Carry ``module``'s state across calls: ``y = stream(x_chunk)``.

    ``module`` is called as ``module(x, state, **options) -> (y, state)`` (``rnnkit.RNN/LSTM/GRU``,
    ``rnnkit.Stack``, ``rnnkit.models.LanguageModel``, ...), or as ``module(x, state=state, ...)``
    when its forward has a ``state`` parameter elsewhere (``rnnkit.models.SequenceTagger``). Options:

    * ``reset=`` bool (B,) or (B, T) in a call restarts rows (at the call's first step, or at the
      marked steps) from the initial state; ``stream.reset(rows)`` marks rows for the next call,
      ``stream.reset()`` forgets every row (the next call may have another batch size).
    * ``detach=True`` (default) cuts the gradient between calls; False keeps the graph (memory
      grows with every call until ``reset()``).

    The batch size is fixed by the first successful call; a call with another raises. A call that
    raises changes nothing: the state, the batch size and the rows pending from ``reset(rows)``
    stay for the next call. The carried state follows the module's device and dtype. ``stream.state`` is the state after the last call.

        >>> import torch, rnnkit
        >>> stream = rnnkit.Stream(rnnkit.LSTM(2, 4))
        >>> _ = stream(torch.randn(3, 5, 2))
        >>> _ = stream(torch.randn(3, 5, 2), reset=torch.tensor([False, True, False]))
        >>> tuple(stream.state[0].shape)              # (h, c), each (L*D, B, H)
        (1, 3, 4)
    """

    def __init__(self, module: nn.Module, *, detach: bool = True) -> None:
        if not callable(module):
            raise bad_argument("module", "a layer or model called as module(x, state) -> (y, state)", module,
                               "pass e.g. rnnkit.LSTM(...) or a LanguageModel")
        self.module = module
        self.detach = detach
        self._by_name = _state_by_name(module)
        self.state: Any = None
        self.batch_size: int | None = None
        self._pending: Tensor | list[int] | None = None  # rows to restart at the next call

    def __repr__(self) -> str:
        return f"Stream({type(self.module).__name__}, batch_size={self.batch_size}, detach={self.detach})"

    def reset(self, rows: Sequence[int] | Tensor | None = None) -> None:
        """Restart ``rows`` (indices, or a bool (B,) mask) at the next call; None: forget every row.

            >>> import torch, rnnkit
            >>> s = rnnkit.Stream(rnnkit.RNN(1, 2))
            >>> _ = s(torch.ones(2, 3, 1)); s.reset(); s.state is None
            True
        """
        if rows is None:
            self.state, self.batch_size, self._pending = None, None, None
            return
        if isinstance(rows, Tensor) and rows.dtype == torch.bool:
            if rows.dim() != 1 or (self.batch_size is not None and rows.shape[0] != self.batch_size):
                raise bad_argument("rows", f"a bool mask (B,) = ({self.batch_size},) or row indices", rows,
                                   "pass one flag per row of the stream")
            picked = rows.cpu()
        else:
            values = rows.tolist() if isinstance(rows, Tensor) else list(rows)
            if not all(isinstance(v, int) and not isinstance(v, bool) for v in values):
                raise bad_argument("rows", "row indices (ints) or a bool mask (B,)", rows, "pass e.g. [0, 3]")
            if self.batch_size is not None and any(not 0 <= v < self.batch_size for v in values):
                raise bad_argument("rows", f"indices in [0, {self.batch_size}) (the stream's batch)", rows,
                                   "pass the indices of rows of this stream")
            picked = values
        self._pending = picked if self._pending is None else self._merge(self._pending, picked)

    @staticmethod
    def _merge(a: Tensor | list[int], b: Tensor | list[int]) -> Tensor | list[int]:
        if isinstance(a, list) and isinstance(b, list):
            return a + b
        n = a.shape[0] if isinstance(a, Tensor) else b.shape[0]  # type: ignore[union-attr]
        return Stream._mask(a, n) | Stream._mask(b, n)

    @staticmethod
    def _mask(rows: Tensor | list[int], batch: int) -> Tensor:
        if isinstance(rows, Tensor):
            return rows
        mask = torch.zeros(batch, dtype=torch.bool)
        if any(not 0 <= v < batch for v in rows):
            raise bad_argument("rows", f"indices in [0, {batch}) (the stream's batch)", rows,
                               "pass the indices of rows of this stream (stream.reset() forgets the pending ones)")
        mask[list(rows)] = True
        return mask

    def _batch_of(self, x: Tensor) -> int:
        if not isinstance(x, Tensor) or x.dim() < 2:
            raise bad_argument("x", "a batched tensor, (B, T, ...) or (T, B, ...) by the module's batch_first", x,
                               "add the batch dimension")
        return int(x.shape[0] if getattr(self.module, "batch_first", True) else x.shape[1])

    def _check_batch(self, batch: int, x: Tensor) -> None:
        if self.batch_size is not None and batch != self.batch_size:
            raise bad_argument("x", f"batch size {self.batch_size} (the stream's rows, fixed by its first call)", x,
                               "keep one row per stream; call stream.reset() first to start over with another batch")

    def _reset_for_call(self, reset: Tensor | None, batch: int, device: torch.device) -> Tensor | None:
        """This call's ``reset``: the call's own merged with the pending rows (kept until a call succeeds)."""
        pending = self._pending
        if pending is None:
            return reset
        rows = self._mask(pending, batch).to(device)  # (B,)
        if reset is None:
            return rows
        if not isinstance(reset, Tensor) or reset.dtype != torch.bool or reset.dim() not in (1, 2):
            return reset  # the module raises its own clear error
        reset = reset.to(device)
        if reset.dim() == 1:
            return reset | rows
        out = reset.clone()
        out[:, 0] |= rows
        return out  # (B, T)

    def _param(self) -> Tensor | None:
        params = getattr(self.module, "parameters", None)
        if params is None:
            return None
        return next((p for p in params() if p.is_floating_point()), None)

    def __call__(self, x: Tensor, *, reset: Tensor | None = None, **options: Any) -> Any:
        """Feed the next chunk x (B, T, ...) of every row; returns the module's output."""
        batch = self._batch_of(x)
        self._check_batch(batch, x)
        reset = self._reset_for_call(reset, batch, x.device)
        if reset is not None:
            options["reset"] = reset
        param = self._param()
        state = self.state if param is None or self.state is None else _move(self.state, param)
        y, state = self.module(x, state=state, **options) if self._by_name else self.module(x, state, **options)
        self._commit(batch, state)
        return y

    def _commit(self, batch: int, state: Any) -> None:
        """After a successful call (only then): the batch size is fixed, the pending rows applied."""
        self.batch_size, self._pending = batch, None
        self.state = _detach(state) if self.detach else state

    def step(self, x: Tensor, *, reset: Tensor | None = None) -> Any:
        """One step x (B, ...) with ``module.step``; ``reset`` (B,) restarts rows first."""
        if not isinstance(x, Tensor) or x.dim() < 1:
            raise bad_argument("x", "a batched step (B, ...)", x, "pass x[:, t]")
        self._check_batch(int(x.shape[0]), x)
        reset = self._reset_for_call(reset, int(x.shape[0]), x.device)
        param = self._param()
        state = self.state if param is None or self.state is None else _move(self.state, param)
        y, state = self.module.step(x, state) if reset is None else self.module.step(x, state, reset=reset)
        self._commit(int(x.shape[0]), state)
        return y
