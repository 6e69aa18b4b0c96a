"""rnnkit.data.batching: padding round trips, bucketing figures, DataLoader with workers and seeds."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader, Dataset

from rnnkit.data import reber
from rnnkit.data.batching import (
    BucketBatchSampler,
    PadCollate,
    lengths_to_mask,
    pad_sequences,
    padded_fraction,
    unpad,
)


def _sequences(n: int, feature_shape: tuple[int, ...], dtype: torch.dtype, seed: int) -> list[torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    lengths = torch.randint(1, 30, (n,), generator=gen).tolist()
    return [torch.randint(-9, 9, (t, *feature_shape), generator=gen).to(dtype) for t in lengths]


@pytest.mark.parametrize(("features", "dtype"), [((3,), torch.float32), ((), torch.int64), ((2, 2), torch.float64)])
def test_pad_and_unpad_round_trip(features: tuple[int, ...], dtype: torch.dtype) -> None:
    seqs = _sequences(17, features, dtype, seed=len(features))
    padded, mask, lengths = pad_sequences(seqs, padding_value=-1)
    t = max(len(s) for s in seqs)
    assert padded.shape == (17, t, *features) and padded.dtype == dtype
    assert mask.dtype == torch.bool and mask.shape == (17, t) and lengths.dtype == torch.int64
    for b, seq in enumerate(seqs):  # a plain loop as the oracle
        n = len(seq)
        assert lengths[b] == n and mask[b].tolist() == [True] * n + [False] * (t - n)
        assert torch.equal(padded[b, :n], seq) and (padded[b, n:] == -1).all()
    for restored in (unpad(padded, lengths), unpad(padded, mask)):
        assert len(restored) == 17 and all(torch.equal(a, b) for a, b in zip(restored, seqs))


def test_lengths_to_mask() -> None:
    mask = lengths_to_mask(torch.tensor([2, 4, 1]), max_length=5)
    assert mask.tolist() == [[j < n for j in range(5)] for n in (2, 4, 1)]
    assert lengths_to_mask([3]).tolist() == [[True, True, True]]


def test_padding_errors() -> None:
    with pytest.raises(ValueError, match="sequences: expected a non-empty list of tensors"):
        pad_sequences([])
    with pytest.raises(ValueError, match=r"sequences\[1\]: expected at least one time step"):
        pad_sequences([torch.ones(2, 3), torch.ones(0, 3)])
    with pytest.raises(ValueError, match=r"sequences\[1\]: expected trailing shape \(3,\) and dtype torch.float32"):
        pad_sequences([torch.ones(2, 3), torch.ones(2, 4)])
    with pytest.raises(ValueError, match="lengths: expected lengths >= 1, but received a length of 0"):
        lengths_to_mask(torch.tensor([3, 0]))
    with pytest.raises(ValueError, match="lengths: expected lengths >= 1, but received a length of -2"):
        BucketBatchSampler([4, -2, 3], batch_size=2)
    with pytest.raises(ValueError, match="lengths: expected a left-aligned bool mask"):
        unpad(torch.zeros(2, 3), torch.tensor([[True, False, True], [True, True, True]]))
    with pytest.raises(ValueError, match="max_length: expected at least max"):
        lengths_to_mask(torch.tensor([4]), max_length=2)
    with pytest.raises(ValueError, match="batch_size: expected a positive int, but received 0"):
        BucketBatchSampler([1, 2], batch_size=0)
    with pytest.raises(ValueError, match="field 1: expected the same length as field 0"):
        PadCollate()([(torch.ones(2), torch.ones(3))])


def test_bucket_sampler_covers_each_index_once_per_epoch() -> None:
    lengths = np.random.default_rng(0).integers(1, 100, size=1003)
    sampler = BucketBatchSampler(lengths, batch_size=32, bucket_size_multiplier=4, seed=1)
    first = list(sampler)
    assert len(first) == len(sampler) == 32 and sorted(i for b in first for i in b) == list(range(1003))
    assert sum(len(b) < 32 for b in first) == 1
    assert list(sampler) == first  # same seed and epoch, same batches
    sampler.set_epoch(1)
    second = list(sampler)
    assert second != first and sorted(i for b in second for i in b) == list(range(1003))
    dropping = BucketBatchSampler(lengths, batch_size=32, drop_last=True, seed=1)
    assert len(dropping) == 31 and all(len(b) == 32 for b in dropping)
    ordered = list(BucketBatchSampler(lengths, batch_size=32, shuffle=False, bucket_size_multiplier=1000))
    flat = [lengths[i] for b in ordered for i in b]
    assert flat == sorted(lengths.tolist())


def test_bucketing_reduces_padding_on_skewed_lengths(capsys: pytest.CaptureFixture[str]) -> None:
    """Lognormal lengths (5000 sequences, median 33, mean 49, max 741), batches of 32.

    Measured with these seeds, counting padding cells from the collated masks: random batching
    pads 79.1% of the cells; bucketing with the default pools of 50 batches pads 15.2%, and with
    one pool for the whole set (bucket_size_multiplier=200) 3.6%.
    """
    rng = np.random.default_rng(42)
    lengths = np.clip(rng.lognormal(mean=3.5, sigma=0.9, size=5000).round().astype(int), 1, 1000)
    order = rng.permutation(len(lengths))
    random_batches = [order[i : i + 32].tolist() for i in range(0, len(order), 32)]
    bucketed = list(BucketBatchSampler(lengths, batch_size=32, bucket_size_multiplier=50, seed=0))
    collate = PadCollate()
    data = [torch.zeros(int(n)) for n in lengths]
    cells = {"random": [0, 0], "bucketed": [0, 0]}  # padding cells, all cells, counted from the masks
    for name, batches in (("random", random_batches), ("bucketed", bucketed)):
        for batch in batches:
            _, mask, _ = collate([data[i] for i in batch])
            cells[name][0] += int((~mask).sum())
            cells[name][1] += mask.numel()
    random_frac = cells["random"][0] / cells["random"][1]
    bucket_frac = cells["bucketed"][0] / cells["bucketed"][1]
    with capsys.disabled():
        print(f"\npadded fraction, lognormal lengths: random {random_frac:.3f}, bucketed {bucket_frac:.3f}")
    assert random_frac == pytest.approx(padded_fraction(lengths, random_batches))
    assert bucket_frac == pytest.approx(padded_fraction(lengths, bucketed))
    assert random_frac > 0.75 and bucket_frac < 0.2 and bucket_frac < random_frac / 4
    whole = list(BucketBatchSampler(lengths, batch_size=32, bucket_size_multiplier=200, seed=0))
    assert padded_fraction(lengths, whole) < 0.05


class _NoisyWords(Dataset):
    """Reber words with per-item noise drawn from torch's RNG inside the worker."""

    def __init__(self) -> None:
        self.inner = reber.ReberDataset(200, seed=4)

    def __len__(self) -> int:
        return len(self.inner)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        x, y, nxt = self.inner[index]
        return x + 0.01 * torch.randn(x.shape), y, nxt


def _run(loader: DataLoader) -> list[tuple[torch.Tensor, ...]]:
    return [tuple(t.clone() for t in batch) for batch in loader]


def test_dataloader_with_workers_is_reproducible() -> None:
    dataset = reber.ReberDataset(300, seed=2)
    collate = PadCollate((0.0, 0.0, reber.IGNORE_INDEX))

    def loader(workers: int) -> DataLoader:
        sampler = BucketBatchSampler(dataset.lengths, batch_size=16, bucket_size_multiplier=4, seed=7)
        return DataLoader(dataset, batch_sampler=sampler, collate_fn=collate, num_workers=workers)

    serial, parallel, again = _run(loader(0)), _run(loader(2)), _run(loader(2))
    assert len(serial) == 19
    for a, b, c in zip(serial, parallel, again, strict=True):
        assert all(torch.equal(x, y) and torch.equal(y, z) for x, y, z in zip(a, b, c, strict=True))
    # the collated batch equals reber.encode of the same words
    x, y, nxt, mask, lengths = serial[0]
    words = [dataset.words[i] for i in list(loader(0).batch_sampler)[0]]
    batch = reber.encode(words)
    assert torch.equal(x, batch.inputs) and torch.equal(y, batch.targets) and torch.equal(nxt, batch.next_ids)
    assert torch.equal(mask, batch.mask) and torch.equal(lengths, batch.lengths)
    # random augmentation in workers: a seeded DataLoader generator fixes every worker's seed
    runs = [_run(DataLoader(_NoisyWords(), batch_size=20, shuffle=True, collate_fn=collate, num_workers=2,
                            generator=torch.Generator().manual_seed(11))) for _ in range(2)]
    assert all(torch.equal(a[0], b[0]) for a, b in zip(*runs, strict=True))


def test_collate_stacks_labels() -> None:
    samples = [(torch.ones(3, 2), torch.tensor(1)), (torch.ones(5, 2), torch.tensor(0))]
    x, label, mask, lengths = PadCollate()(samples)
    assert x.shape == (2, 5, 2) and label.tolist() == [1, 0] and lengths.tolist() == [3, 5]
    assert mask.sum().item() == 8
