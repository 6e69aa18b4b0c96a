"""The numbers of the Blocks recurrent-bricks tutorial (seed 000), exactly.

Blocks is time-major, (T, B, F) = (3, 1, 3); rnnkit is batch-first, so the same data is
(B, T, F) = (1, 3, 3) and the expected rows are read along axis 1.
"""
from __future__ import annotations

import pytest
import torch
from torch import Tensor, nn

import rnnkit
from rnnkit.cells import ElmanCell, SimpleRecurrent

ONES = torch.ones(1, 3, 3)  # (B, T, F), Blocks' numpy.ones((3, 1, 3)) batch-first


def rows(*values: float) -> Tensor:
    """(1, T, 3): row t filled with values[t]; the tutorial's printed arrays, batch-first."""
    return torch.tensor(values, dtype=torch.float32).view(1, -1, 1).expand(1, len(values), 3).contiguous()


def accumulator(dim: int = 3) -> ElmanCell:
    return ElmanCell(dim, activation="identity", weight_init=rnnkit.init.identity())


class FeedbackRNN(rnnkit.Recurrent):
    """The tutorial's two-layer feedback network, written as one step over two cells' steps."""

    states = ("first", "second")

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.dim = dim
        self.first_layer = accumulator(dim)
        self.second_layer = accumulator(dim)

    def state_shape(self, name: str) -> tuple[int, ...]:
        return (self.dim,)

    def step(self, inputs: Tensor, first: Tensor, second: Tensor) -> tuple[Tensor, Tensor]:
        first_h = self.first_layer.step(inputs, first + second)  # (B, H)
        second_h = self.second_layer.step(first_h, second)  # (B, H)
        return first_h, second_h


def test_accumulator_counts_one_two_three():
    rnn = SimpleRecurrent(3, activation="identity", weight_init=rnnkit.init.identity())
    assert torch.equal(rnn(ONES), rows(1, 2, 3))


def test_doubling_linear_in_front_gives_two_four_six():
    doubler = nn.Linear(3, 3)
    rnnkit.init.identity(2.0)(doubler.weight.data)
    rnnkit.init.constant(0.0)(doubler.bias.data)
    assert torch.equal(accumulator()(doubler(ONES)), rows(2, 4, 6))


def test_initial_state_one_gives_two_three_four():
    h0 = torch.ones(1, 3)  # (B, H)
    assert torch.equal(accumulator()(ONES, h=h0), rows(2, 3, 4))
    assert torch.equal(accumulator().scan(ONES, initial_states={"h": h0}).outputs["h"], rows(2, 3, 4))


def test_feedback_rnn_first_states_one_three_eight():
    first, _ = FeedbackRNN(3)(ONES)
    assert torch.equal(first, rows(1, 3, 8))


def test_feedback_rnn_second_states_one_four_twelve():
    _, second = FeedbackRNN(3)(ONES)
    assert torch.equal(second, rows(1, 4, 12))


def test_feedback_rnn_final_states_are_the_last_step():
    result = FeedbackRNN(3).scan(ONES)
    assert torch.equal(result.final["first"], torch.full((1, 3), 8.0))
    assert torch.equal(result.final["second"], torch.full((1, 3), 12.0))


def test_iterate_false_computes_one_step():
    x0 = ONES[:, 0]  # (B, F)
    assert torch.equal(accumulator()(x0, iterate=False), torch.ones(1, 3))
    assert torch.equal(accumulator()(x0, h=torch.full((1, 3), 5.0), iterate=False), torch.full((1, 3), 6.0))
    first, second = FeedbackRNN(3)(x0, iterate=False)
    assert torch.equal(first, torch.ones(1, 3)) and torch.equal(second, torch.ones(1, 3))


def test_iterate_false_steps_chained_by_hand_equal_the_scan():
    feedback = FeedbackRNN(3)
    first = second = torch.zeros(1, 3)
    seen = []
    for t in range(3):
        first, second = feedback(ONES[:, t], first=first, second=second, iterate=False)
        seen.append((first[0, 0].item(), second[0, 0].item()))
    assert seen == [(1.0, 1.0), (3.0, 4.0), (8.0, 12.0)]


def test_return_initial_states_forward_puts_h0_at_index_zero():
    out = accumulator()(ONES, h=torch.ones(1, 3), return_initial_states=True)
    assert torch.equal(out, rows(1, 2, 3, 4))  # (B, T+1, H)


def test_return_initial_states_reverse_puts_h0_at_index_t():
    out = accumulator()(ONES, h=torch.ones(1, 3), reverse=True, return_initial_states=True)
    assert torch.equal(out, rows(4, 3, 2, 1))  # step t=2 runs first: 2, then 3, then 4; h0 at T


def test_return_initial_states_of_the_feedback_rnn():
    first, second = FeedbackRNN(3)(ONES, return_initial_states=True)
    assert torch.equal(first, rows(0, 1, 3, 8))
    assert torch.equal(second, rows(0, 1, 4, 12))


def test_reverse_accumulates_suffix_sums():
    x = rows(1, 2, 3)
    assert torch.equal(accumulator()(x), rows(1, 3, 6))
    assert torch.equal(accumulator()(x, reverse=True), rows(6, 5, 3))
    first, second = FeedbackRNN(3)(ONES, reverse=True)
    assert torch.equal(first, rows(8, 3, 1)) and torch.equal(second, rows(12, 4, 1))


@pytest.mark.parametrize("reverse,expected,final", [(False, (1, 3, 0), 3.0), (True, (3, 2, 0), 3.0)])
def test_reverse_runs_over_each_sequence_own_length(reverse, expected, final):
    x = rows(1, 2, 100)  # the last step is padding: it must never be read
    result = accumulator().scan(x, lengths=torch.tensor([2]), reverse=reverse)
    assert torch.equal(result.outputs["h"], rows(*expected))
    assert torch.equal(result.final["h"], torch.full((1, 3), final))
