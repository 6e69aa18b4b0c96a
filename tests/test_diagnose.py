"""``rnnkit diagnose``: the gradient-flow figures against autograd, and the command end to end."""
from __future__ import annotations

import json
import math

import torch
import torch.nn.functional as F

from rnnkit.cli import main
from rnnkit.data import reber
from rnnkit.models import RNNConfig, SequenceTagger, TaggerConfig
from rnnkit.training.diagnose import PROBE_SEED, gradient_flow


def _autograd_flow(model: SequenceTagger, n: int) -> dict[int, float]:
    """The oracle: dL/dh_t (RMS over words) by autograd on a hand-written loop over the cell, one word at a time."""
    sums: dict[int, float] = {}
    cell = model.rnn.layers[0].fwd.cell
    proj = model.rnn.layers[0].fwd.input
    for word in reber.dataset(n, seed=PROBE_SEED, embedded=True):
        enc = reber.encode([word], True)
        T = len(word) - 1
        probe = T - 2
        x = proj(F.one_hot(enc.input_ids, 7).double())  # (1, T, G)
        states = [torch.zeros(1, cell.hidden_size, dtype=torch.float64) for _ in cell.states]
        if model.h0 is not None:  # the learned initial state, (S, L*D, 1, H): layer 0's
            states = [model.h0[i, 0].detach() for i in range(len(cell.states))]
        kept = []
        for t in range(T):
            out = cell.pack_outputs(cell.step(x[:, t], *states))
            states = [o for o in out[: len(cell.states)]]
            for s in states:
                s.retain_grad()
            kept.append(states)
        loss = F.binary_cross_entropy_with_logits(model.head(kept[probe][0]), enc.targets[:, probe].double(),
                                                  reduction="sum")
        loss.backward()
        for t in range(probe + 1):
            sq = float(kept[t][0].grad.pow(2).sum())  # dL/dh_t
            sums.setdefault(probe - t, []).append(sq)
    return {d: math.sqrt(sum(v) / len(v)) for d, v in sorted(sums.items())}


def test_gradient_flow_equals_autograd_for_elman_and_lstm():
    for cell in ("elman", "lstm"):
        torch.manual_seed(0)
        model = SequenceTagger(TaggerConfig(vocab_size=7, rnn=RNNConfig(cell=cell, hidden_size=12))).double()
        ours = gradient_flow(model, "embedded-reber", sequences=30)
        oracle = _autograd_flow(model, 30)
        assert list(ours) == list(oracle)
        for d in oracle:
            assert math.isclose(ours[d], oracle[d], rel_tol=1e-9, abs_tol=1e-15), (cell, d, ours[d], oracle[d])


def test_gradient_flow_probes_from_the_learned_initial_state():
    for cell in ("elman", "lstm"):
        torch.manual_seed(1)
        config = TaggerConfig(vocab_size=7, rnn=RNNConfig(cell=cell, hidden_size=12), learn_initial_state=True)
        model = SequenceTagger(config).double()
        with torch.no_grad():
            model.h0.uniform_(-1.5, 1.5)  # a learned h0 far from zeros
        ours = gradient_flow(model, "embedded-reber", sequences=30)
        oracle = _autograd_flow(model, 30)
        for d in oracle:
            assert math.isclose(ours[d], oracle[d], rel_tol=1e-9, abs_tol=1e-15), (cell, d, ours[d], oracle[d])
        with torch.no_grad():
            model.h0.zero_()
        assert gradient_flow(model, "embedded-reber", sequences=30) != ours  # the h0 matters to the probe


def test_diagnose_command_writes_plot_json_and_table(tmp_path, capsys):
    out = tmp_path / "diag"
    code = main(["diagnose", "--cells", "elman,lstm", "--steps", "2", "--sequences", "20", "--out", str(out),
                 "--quiet", "--json", str(tmp_path / "flow.json")])
    assert code == 0
    result = json.loads((tmp_path / "flow.json").read_text())
    assert [(c["cell"], c["moment"]) for c in result["curves"]] == [
        ("elman", "init"), ("elman", "trained"), ("lstm", "init"), ("lstm", "trained")]
    for curve in result["curves"]:
        assert curve["distance"][0] == 0 and all(n >= 0 for n in curve["norm"])
        assert curve["ratio_10_to_1"] is None or curve["ratio_10_to_1"] > 0
    assert (out / "gradient_flow.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert (out / "gradient_flow.json").exists()


def test_diagnose_rejects_an_unknown_cell_with_one_line(capsys):
    assert main(["diagnose", "--cells", "elman,bogus"]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "--cells" in err and "bogus" in err


# ---------------------------------------------------------------- rnnkit diagnose RUN
import pytest  # noqa: E402

import rnnkit  # noqa: E402


@pytest.fixture(scope="module")
def reber_run(tmp_path_factory):
    run = tmp_path_factory.mktemp("diag") / "run"
    assert main(["train", "--task", "embedded-reber", "--cell", "lstm", "--hidden", "8", "--steps", "6",
                 "--eval-every", "3", "--eval-size", "20", "--no-plot", "--no-tensorboard", "--quiet",
                 "--out", str(run)]) == 0
    return run


def test_diagnose_a_run_folder_measures_its_checkpoint(reber_run, tmp_path, capsys):
    code = main(["diagnose", str(reber_run), "--sequences", "25", "--json", str(tmp_path / "flow.json")])
    out = capsys.readouterr().out
    assert code == 0 and "| lstm | checkpoint |" in out
    result = json.loads((tmp_path / "flow.json").read_text())
    assert result["config"]["task"] == "embedded-reber" and result["runs"][0]["steps"] == 6
    oracle = gradient_flow(rnnkit.load(reber_run), "embedded-reber", sequences=25)  # tested against autograd above
    curve = result["curves"][0]
    assert curve["distance"] == list(oracle)
    assert all(math.isclose(a, b, rel_tol=1e-12) for a, b in zip(curve["norm"], oracle.values()))
    assert (reber_run / "diagnose" / "gradient_flow.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert json.loads((reber_run / "diagnose" / "gradient_flow.json").read_text())["curves"] == result["curves"]
    # --run and the checkpoint/ folder name the same run; --out moves the files
    assert main(["diagnose", "--run", str(reber_run / "checkpoint"), "--sequences", "25", "--out",
                 str(tmp_path / "o"), "--quiet"]) == 0
    assert json.loads((tmp_path / "o" / "gradient_flow.json").read_text())["curves"] == result["curves"]


def test_diagnose_run_errors_are_one_clear_line(reber_run, tmp_path, capsys):
    def err(*argv):
        assert main(["diagnose", *argv]) == 2
        text = capsys.readouterr().err.strip()
        assert "\n" not in text and "Fix" in text
        return text

    assert "run folder" in err(str(tmp_path))  # an empty folder
    assert "not a folder" in err(str(tmp_path / "missing"))
    assert "--cells" in err(str(reber_run), "--cells", "elman")
    sine = tmp_path / "sine"
    assert main(["train", "--task", "sine", "--hidden", "4", "--steps", "2", "--eval-every", "2", "--eval-size", "8",
                 "--no-plot", "--no-tensorboard", "--quiet", "--out", str(sine)]) == 0
    text = err(str(sine))
    assert "'sine'" in text and "embedded-reber" in text
    broken = tmp_path / "broken"
    import shutil

    shutil.copytree(reber_run / "checkpoint", broken)
    weights = next(broken.glob("weights-*.safetensors"))  # the model's weights (a damaged training state blocks only --resume)
    data = bytearray(weights.read_bytes())
    data[-1] ^= 0xFF
    weights.write_bytes(bytes(data))
    assert "SHA-256" in err(str(broken)) or "sha256" in err(str(broken)).lower()
