"""``SequenceClassifier`` (many-to-one) and ``SequenceRegressor`` (many-to-many or many-to-one)."""
from __future__ import annotations

from dataclasses import dataclass, field

import torch.nn.functional as F
from torch import Tensor, nn

from rnnkit.checkpoint.registry import register_model
from rnnkit.errors import bad_argument
from rnnkit.models.body import RNNConfig, build_rnn, final_hidden

__all__ = ["ClassifierConfig", "RegressorConfig", "SequenceClassifier", "SequenceRegressor"]


def _check_x(x: Tensor, size: int) -> None:
    if not isinstance(x, Tensor) or x.dim() != 3 or x.shape[-1] != size:
        raise bad_argument("x", f"a float tensor (B, T, {size})", x, "reshape the features to (B, T, F)")


@dataclass(frozen=True)
class ClassifierConfig:
    input_size: int  # features per step
    num_classes: int  # output classes
    rnn: RNNConfig = field(default_factory=RNNConfig)  # the recurrent stack


@register_model
class SequenceClassifier(nn.Module):
    """x (B, T, F) -> class logits (B, C) from the final state (both directions if bidirectional).

        >>> import torch
        >>> clf = SequenceClassifier(ClassifierConfig(input_size=3, num_classes=4))
        >>> tuple(clf(torch.randn(2, 6, 3), lengths=torch.tensor([6, 2])).shape)   # (B, C)
        (2, 4)
    """

    config_class = ClassifierConfig  # the config a checkpoint stores and rebuilds it from

    def __init__(self, config: ClassifierConfig) -> None:
        super().__init__()
        self.config = config
        self.rnn = build_rnn(config.rnn, config.input_size)
        self.head = nn.Linear(config.rnn.output_size, config.num_classes)

    def forward(self, x: Tensor, lengths: Tensor | None = None) -> Tensor:
        _check_x(x, self.config.input_size)
        _, state = self.rnn(x, None, lengths)
        h_n = state[0] if isinstance(state, tuple) else state  # (L*D, B, H)
        return self.head(final_hidden(h_n, self.config.rnn.num_layers, self.config.rnn.bidirectional))  # (B, C)

    def loss(self, logits: Tensor, targets: Tensor) -> Tensor:
        """Mean cross-entropy: logits (B, C), targets (B,) class ids -> a scalar."""
        return F.cross_entropy(logits, targets)


@dataclass(frozen=True)
class RegressorConfig:
    input_size: int  # features per step
    output_size: int  # targets per step (or per sequence)
    rnn: RNNConfig = field(default_factory=RNNConfig)  # the recurrent stack
    many_to_one: bool = False  # True: one prediction per sequence from the final state


@register_model
class SequenceRegressor(nn.Module):
    """x (B, T, F) -> (B, T, O) predictions (or (B, O) with ``many_to_one``), MSE loss.

        >>> import torch
        >>> reg = SequenceRegressor(RegressorConfig(input_size=2, output_size=2))
        >>> tuple(reg(torch.randn(3, 5, 2)).shape)   # (B, T, O)
        (3, 5, 2)
    """

    config_class = RegressorConfig  # the config a checkpoint stores and rebuilds it from

    def __init__(self, config: RegressorConfig) -> None:
        super().__init__()
        self.config = config
        self.rnn = build_rnn(config.rnn, config.input_size)
        self.head = nn.Linear(config.rnn.output_size, config.output_size)

    def forward(self, x: Tensor, lengths: Tensor | None = None) -> Tensor:
        _check_x(x, self.config.input_size)
        y, state = self.rnn(x, None, lengths)  # (B, T, D*H)
        if self.config.many_to_one:
            h_n = state[0] if isinstance(state, tuple) else state
            return self.head(final_hidden(h_n, self.config.rnn.num_layers, self.config.rnn.bidirectional))  # (B, O)
        return self.head(y)  # (B, T, O)

    def loss(self, pred: Tensor, target: Tensor, mask: Tensor | None = None) -> Tensor:
        """Mean squared error over real steps: pred and target shaped alike, mask (B, T) bool or None."""
        per = F.mse_loss(pred, target, reduction="none")
        if mask is None or self.config.many_to_one:
            return per.mean()
        m = mask.to(per.dtype).unsqueeze(-1).expand_as(per)
        return (per * m).sum() / m.sum()
