"""The README (and the guide pages of the docs site) cannot drift from the code: their code runs here.

* Every ```python block of README.md runs as a script, in order, in one scratch folder (so
  ``checkpoints/`` and ``runs/`` land there). A ``print(...)  # [..]`` line's comment is the
  expected output and must appear in what the block printed.
* The README's generation example reads ``runs/text``; a 30-step text run made with the CLI
  stands in for the README's 10-minute one (the example shows the API, not the quality).
* The cheap bash lines run too: the main job ``rnnkit train``, then ``rnnkit eval`` and
  ``rnnkit info`` on its run folder, and ``rnnkit train --cell gru --seed 3 --json out.json``.
  Each is looked up verbatim in the README first, so editing one there fails here until the
  test follows.
* The README's test command is exactly the one ``.ci/run`` runs.
* The ```python blocks of the guide pages in docs/ run the same way.
"""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text(encoding="utf-8")
GUIDES = ["custom-cells.md", "engines.md", "bptt.md", "streaming.md"]
TIMEOUT = 900  # a hang guard only


def python_blocks(markdown: str) -> list[str]:
    return re.findall(r"^```python\n(.*?)^```", markdown, re.MULTILINE | re.DOTALL)


def run(args: list[str], cwd: Path) -> str:
    env = {**os.environ, "MPLBACKEND": "Agg", "OMP_WAIT_POLICY": "PASSIVE"}
    proc = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=TIMEOUT)
    assert proc.returncode == 0, f"{args} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    return proc.stdout


def run_block(code: str, cwd: Path) -> None:
    out = run([sys.executable, "-c", code], cwd)
    for comment in re.findall(r"^print\(.*\)\s+#\s*(\[.*)$", code, re.MULTILINE):
        expected = comment.split("   ")[0].strip()  # three spaces end the expected output; a remark may follow
        assert expected in out, f"expected {expected!r} in the output of:\n{code}\ngot:\n{out}"


def readme_line(command: str) -> str:
    """``command`` as the README writes it on a line of its own (a trailing comment allowed)."""
    assert re.search(rf"^{re.escape(command)}(\s+#.*)?$", README, re.MULTILINE), f"README no longer has {command!r}"
    return command


@pytest.fixture(scope="module")
def scratch(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("readme")
    run([sys.executable, "-m", "rnnkit.cli", "train", "--task", "text", "--steps", "30", "--hidden", "32",
         "--layers", "1", "--threads", "1", "--out", "runs/text", "--quiet"], folder)
    return folder


def test_readme_has_python_blocks():
    assert len(python_blocks(README)) >= 4


@pytest.mark.parametrize("index", range(len(python_blocks(README))))
def test_readme_python_block_runs(index, scratch):
    run_block(python_blocks(README)[index], scratch)


def test_readme_main_job_and_cheap_commands_run(tmp_path):
    rnnkit = [sys.executable, "-m", "rnnkit.cli"]
    run(rnnkit + readme_line("rnnkit train").split()[1:], tmp_path)
    run_dir = tmp_path / "runs" / "embedded-reber"
    assert (run_dir / "curve.png").stat().st_size > 0 and (run_dir / "metrics.jsonl").exists()
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["solved"] is True and summary["metrics"]["long_range_accuracy"] >= 0.99
    assert "long_range_accuracy" in run(rnnkit + readme_line("rnnkit eval runs/embedded-reber").split()[1:], tmp_path)
    assert run(rnnkit + readme_line("rnnkit info runs/embedded-reber").split()[1:], tmp_path).strip()
    run(rnnkit + readme_line("rnnkit train --cell gru --seed 3 --json out.json").split()[1:], tmp_path)
    out = json.loads((tmp_path / "out.json").read_text())
    assert out["cell"] == "gru" and out["task"] == "embedded-reber"
    for key in ("checkpoint", "train_sequences", "train_tokens", "wall_seconds", "world_size", "metrics"):
        assert key in out


def test_readme_test_command_is_what_ci_runs():
    command = re.search(r"Run the tests.*?```bash\n(.*?)\n```", README, re.DOTALL).group(1).strip()
    ci = [line.strip() for line in (ROOT / ".ci" / "run").read_text().splitlines()]
    assert command in ci


@pytest.mark.parametrize("page", GUIDES)
def test_docs_guide_python_blocks_run(page, tmp_path):
    blocks = python_blocks((ROOT / "docs" / page).read_text(encoding="utf-8"))
    assert blocks, f"docs/{page} has no python block"
    for code in blocks:
        run_block(code, tmp_path)
