"""The cell compiler's contract: what compiles, what does not (and says why), the cache, and
machines without a C compiler. Numerics are in test_compiler_property.py."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

import rnnkit
from rnnkit.cells import ElmanCell, GRUCell, LayerNormLSTMCell, LSTMCell
from rnnkit.cells.examples import UserLSTM  # the same IR, so the same compiled unit, as LSTMCell
from rnnkit.engine.compiler import compile_cell, explain
from rnnkit.engine.generic import scan_stepwise

needs_cc = pytest.mark.skipif(shutil.which("cc") is None and shutil.which("gcc") is None, reason="no C compiler")


class SinCell(rnnkit.Structured):
    states = ("h",)

    def pointwise(self, inputs, hw, h):  # type: ignore[no-untyped-def]
        return torch.sin(inputs + hw) + 0.5 * h


@pytest.mark.parametrize("make", [lambda: LSTMCell(4), lambda: LSTMCell(4, peepholes=True), lambda: GRUCell(4),
                                  lambda: ElmanCell(4, "relu"), lambda: ElmanCell(4, "identity"),
                                  lambda: LayerNormLSTMCell(4), lambda: UserLSTM(4)])
def test_builtin_and_user_cells_compile(make):
    cell = make()
    assert explain(cell) is None
    assert compile_cell(cell, torch.float64, "cpu") is not None


def test_user_lstm_compiles_to_the_builtin_lstm_unit():
    a = compile_cell(UserLSTM(4), torch.float32, "cpu")
    b = compile_cell(LSTMCell(4), torch.float32, "cpu")
    assert a.unit == b.unit and a.summed


def test_unsupported_op_is_named_and_the_cell_still_runs_on_autograd():
    cell = SinCell(3).double()
    assert explain(cell) == "sin"
    assert compile_cell(cell, torch.float64, "cpu") is None
    xp = torch.randn(2, 4, 3, dtype=torch.float64, requires_grad=True)
    h0 = torch.randn(2, 3, dtype=torch.float64)
    fast = cell.scan(xp, h=h0).outputs["h"]
    slow = scan_stepwise(cell, {"inputs": xp}, {"h": h0}, {}).outputs["h"]
    torch.testing.assert_close(fast, slow, atol=1e-12, rtol=1e-12)
    (g_fast,) = torch.autograd.grad(fast.sum(), xp)
    (g_slow,) = torch.autograd.grad(slow.sum(), xp)
    torch.testing.assert_close(g_fast, g_slow, atol=1e-12, rtol=1e-12)


def test_explain_reads_a_layer_cell_and_names_other_unsupported_things():
    class Inplace(rnnkit.Structured):
        states = ("h",)

        def pointwise(self, inputs, hw, h):  # type: ignore[no-untyped-def]
            z = inputs + hw
            return z.tanh_()

    class ValueBranch(rnnkit.Structured):
        states = ("h",)

        def pointwise(self, inputs, hw, h):  # type: ignore[no-untyped-def]
            return torch.tanh(inputs + hw) if bool((h > 0).all()) else h

    assert "in-place op tanh_" in explain(Inplace(2))
    assert explain(ValueBranch(2)) == "all"  # a branch on tensor values cannot be traced
    assert explain(rnnkit.LSTM(3, 4, num_layers=2, bidirectional=True)) is None
    assert explain(rnnkit.Bidirectional(UserLSTM(4), SinCell(4))) == "sin"


_SCRIPT = textwrap.dedent("""
    import logging, sys, torch, rnnkit
    logging.basicConfig(level=logging.WARNING, format="LOG %(message)s")
    import rnnkit.engine.compiler.build as build
    if sys.argv[1] == "cached":
        def refuse(*a, **k):
            raise SystemExit("the compiler ran again")
        build._compile = refuse
    class MGU(rnnkit.Structured):
        gates = 2
        states = ("h",)
        def pointwise(self, inputs, hw, h):
            xf, xn = inputs.chunk(2, dim=1)
            hf, hn = hw.chunk(2, dim=1)
            f = torch.sigmoid(xf + hf)
            return (1 - f) * h + f * torch.tanh(xn + f * hn) * 0.987654321
    from rnnkit.engine.compiler import compile_cell
    cell = MGU(5)
    cc = compile_cell(cell, torch.float32, "cpu")
    print("LIB", cc.lib is not None)
    x = torch.randn(2, 6, 10, requires_grad=True)
    y = cell.scan(x).outputs["h"]
    y.sum().backward()
    print("RAN", bool(torch.isfinite(x.grad).all()))
""")


def _run(mode: str, cache: str, **env: str) -> str:
    full = {**os.environ, "RNNKIT_CACHE": cache, **env}
    out = subprocess.run([sys.executable, "-c", _SCRIPT, mode], env=full, capture_output=True, text=True,
                         timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    return out.stdout + out.stderr


@needs_cc
def test_a_second_process_loads_the_cached_library_without_compiling(tmp_path):
    first = _run("fresh", str(tmp_path))
    assert "LIB True" in first and "RAN True" in first
    assert len(list((tmp_path / "native").glob("*.so"))) == 1
    second = _run("cached", str(tmp_path))
    assert "LIB True" in second and "RAN True" in second


def test_without_a_c_compiler_every_cell_runs_and_one_line_says_why(tmp_path):
    empty = tmp_path / "bin"
    empty.mkdir()
    out = _run("fresh", str(tmp_path / "cache"), CC=str(tmp_path / "missing-cc"), PATH=str(empty))
    assert "LIB False" in out and "RAN True" in out
    lines = [ln for ln in out.splitlines() if ln.startswith("LOG")]
    assert len(lines) == 1 and "no C compiler" in lines[0]
    off = _run("fresh", str(tmp_path / "cache2"), RNNKIT_NATIVE="0")
    assert "LIB False" in off and "RAN True" in off and "RNNKIT_NATIVE=0" in off


def test_compiling_a_cell_leaves_torchs_random_state_alone():
    """Regression: tracing drew its example inputs from torch's global RNG, so a model's first
    call (which compiles its cells) drew different dropout masks than a later call under the same
    seed, and a resumed training run (its cells compiled already) differed from one long run."""
    cell = LSTMCell(7)
    before = torch.get_rng_state()
    assert compile_cell(cell, torch.float32, "cpu") is not None
    assert torch.equal(torch.get_rng_state(), before)
    layer = rnnkit.LSTM(3, 9, num_layers=2, dropout=0.5, engine="generic")  # fresh cells: compiled on first call
    x = torch.randn(2, 5, 3)
    outs = []
    for _ in range(2):
        torch.manual_seed(4)
        outs.append(layer(x)[0])
    assert torch.equal(outs[0], outs[1])


_COMPILER_DIR = Path(rnnkit.engine.compiler.__file__).parent
_PRINTERS = sorted({"cprint.py", "cloops.py", "czone.py", "ops.py", "build.py"}
                   | {f.name for f in _COMPILER_DIR.glob("*.py")})


@pytest.mark.parametrize("printer", _PRINTERS)
def test_the_library_cache_key_covers_every_c_printer(printer, monkeypatch):
    """A change to any module that prints C must change the cache key, or a stale library is loaded
    (every module of the compiler package is checked, so a new printer file is covered too)."""
    from rnnkit.engine.compiler import build

    build._fingerprint.cache_clear()
    before = build._fingerprint()
    real = Path.read_bytes

    def edited(self):
        data = real(self)
        return data + b"\n# edited" if self.name == printer and self.parent.name == "compiler" else data

    monkeypatch.setattr(Path, "read_bytes", edited)
    build._fingerprint.cache_clear()
    try:
        assert build._fingerprint() != before
    finally:
        monkeypatch.undo()
        build._fingerprint.cache_clear()
