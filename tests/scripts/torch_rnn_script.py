"""An ordinary torch.nn script: a packed, sequence-first, projected LSTM and a GRU, a training
loop, and a state_dict save/load. tests/test_dropin_script.py runs it as is and with the one
marked line swapped for ``from rnnkit import nn as rnn_nn``."""
import torch
from safetensors.torch import load as load_tensors
from safetensors.torch import save as save_tensors
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

rnn_nn = torch.nn  # SWAP: from rnnkit import nn as rnn_nn


class Tagger(nn.Module):
    def __init__(self):
        super().__init__()
        self.embed = nn.Embedding(30, 8)
        self.lstm = rnn_nn.LSTM(8, 16, num_layers=2, bidirectional=True, proj_size=6)
        self.gru = rnn_nn.GRU(12, 10)
        self.out = nn.Linear(10, 5)

    def forward(self, tokens, lengths, h0=None):
        packed = pack_padded_sequence(self.embed(tokens), lengths, enforce_sorted=False)
        out, (h, c) = self.lstm(packed)
        padded, _ = pad_packed_sequence(out, total_length=tokens.shape[0])
        y, h_n = self.gru(padded, h0)
        return self.out(y), h_n


def main():
    torch.manual_seed(0)
    model = Tagger()
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    g = torch.Generator().manual_seed(1)
    tokens = torch.randint(0, 30, (9, 4), generator=g)
    lengths = torch.tensor([9, 3, 6, 6])
    labels = torch.randint(0, 5, (9, 4), generator=g)
    h0 = torch.randn(1, 4, 10, generator=g)
    losses = []
    for _ in range(4):
        opt.zero_grad()
        logits, _ = model(tokens, lengths, h0)
        loss = nn.functional.cross_entropy(logits.flatten(0, 1), labels.flatten())
        loss.backward()
        opt.step()
        losses.append(loss.item())
    grads = {name: p.grad.clone() for name, p in model.named_parameters()}
    blob = save_tensors({k: v.contiguous() for k, v in model.state_dict().items()})
    fresh = Tagger()
    fresh.load_state_dict(load_tensors(blob))
    with torch.no_grad():
        logits, h_n = fresh(tokens, lengths, h0)
    return {"losses": losses, "logits": logits, "h_n": h_n, "state_dict": load_tensors(blob),
            "grads": grads, "model": fresh}
