"""``rnnkit sample CHECKPOINT``: generate from a checkpoint, streaming to the terminal.

The options fill the same ``GenerationConfig`` as the Python API (``rnnkit.generation``).

Text models stream characters as they come (one sample at a time; with ``--num`` > 1 each
sample is printed when it is complete). Reber models print every word with its grammar verdict
as soon as it ends, then the share of valid words. ``--json PATH`` writes ``samples`` (a list of
``{"text", "logprob"}``, the text including the prompt, the log-probability the model's own,
see ``rnnkit.generation.config``) and, for Reber models, ``valid_fraction``; ``--json -`` writes
it to stdout instead of the samples.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

from rnnkit.cli.common import CLIError, add_json_argument, check_writable_file, user_errors, write_json

if TYPE_CHECKING:  # torch and the generation package load only when the command runs
    from torch import Tensor

    from rnnkit.generation import DecodingTask, Generation, GenerationConfig, Generator

__all__ = ["add_parser", "run"]

GRAMMARS = ("reber", "embedded-reber")
EXAMPLES = """examples:
  rnnkit sample runs/text --prompt "ROMEO:" --length 300 --temperature 0.8
  rnnkit sample runs/reber --num 1000 --seed 0 --json samples.json
  rnnkit sample runs/embedded-reber --num 1000 --constrained
  rnnkit sample runs/text --prompt "The " --beam 8 --num 3 --length 40
  rnnkit sample runs/words --num 5 --min-length 6 --temperature 0.8   # whole sentences, <s> to </s>
  rnnkit sample runs/translate --prompt "quatre-vingt-dix-sept" --beam 5
"""


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Register ``sample`` on the ``rnnkit`` command's subparsers."""
    p = subparsers.add_parser("sample", help="generate text or Reber words from a checkpoint",
                              description=__doc__.split("\n\n", 2)[2].replace("``", ""), epilog=EXAMPLES,
                              formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("checkpoint", metavar="CHECKPOINT", type=Path,
                   help="a run folder of rnnkit train, or a checkpoint folder (rnnkit.save)")
    p.add_argument("--prompt", default=None,
                   help="text to continue (default: 'B' for Reber models, a newline for text models)")
    p.add_argument("--length", type=int, default=None, metavar="N",
                   help="tokens to generate at most per sample (default: 500 for text, 200 for Reber)")
    p.add_argument("--temperature", type=float, default=1.0, metavar="T",
                   help="> 0; below 1 is more conservative (default 1)")
    p.add_argument("--top-k", type=int, default=None, metavar="K", help="sample among the K most likely tokens only")
    p.add_argument("--top-p", type=float, default=None, metavar="P",
                   help="sample within the nucleus of mass P, in (0, 1]")
    p.add_argument("--greedy", action="store_true", help="take the most likely token at every step")
    p.add_argument("--beam", type=int, default=None, metavar="W", help="beam search of width W instead of sampling")
    p.add_argument("--length-penalty", type=float, default=1.0, metavar="A",
                   help="beam: rank by logprob / length**A (default 1; 0 ranks by raw logprob)")
    p.add_argument("--num", type=int, default=None, metavar="N",
                   help="samples to draw, or beam hypotheses to print (default: 20 for Reber, 1 for text)")
    p.add_argument("--seed", type=int, default=None, metavar="S",
                   help="makes the run reproducible (default: fresh randomness)")
    p.add_argument("--constrained", action="store_true",
                   help="Reber: mask every step with the grammar, so every word is valid")
    p.add_argument("--grammar", choices=GRAMMARS, default=None,
                   help="Reber: the grammar, for a checkpoint whose metadata does not name it")
    p.add_argument("--min-length", type=int, default=0, metavar="N",
                   help="word models: sentences of at least N words (</s> is masked until then)")
    p.add_argument("--allow-unk", action="store_true", help="word models: let sentences contain <unk>")
    p.add_argument("--device", metavar="DEVICE", default="auto",
                   help="auto (CUDA when available, else CPU; default), cpu, cuda or cuda:N")
    p.add_argument("--quiet", action="store_true", help="print only the Reber summary line (nothing for text)")
    add_json_argument(p)
    return p


_FLAGS = {"max_length": "--length", "temperature": "--temperature", "top_k": "--top-k", "top_p": "--top-p",
          "beam": "--beam", "length_penalty": "--length-penalty", "num_samples": "--num", "seed": "--seed",
          "prompt": "--prompt", "grammar": "--grammar", "constrained": "--constrained"}


def _config(args: argparse.Namespace, task: DecodingTask) -> GenerationConfig:
    """The GenerationConfig the flags ask for (the CLI fills the same dataclass as the API)."""
    from rnnkit.generation import GenerationConfig

    strategy_flags = [flag for flag, on in (("--temperature", args.temperature != 1.0), ("--top-k", args.top_k is not
                                            None), ("--top-p", args.top_p is not None)) if on]
    if args.beam is not None and args.greedy:
        raise CLIError("--beam: expected no --greedy with beam search (--beam 1 is greedy), but received --beam "
                       "with --greedy. Fix: drop one of the two")
    if args.beam is not None and strategy_flags:
        raise CLIError(f"--beam: expected no sampling flags with beam search (it is deterministic), but received "
                       f"--beam with {', '.join(strategy_flags)}. Fix: drop the sampling flags or --beam")
    if args.greedy and strategy_flags:
        raise CLIError(f"--greedy: expected no sampling flags with --greedy, but received --greedy with "
                       f"{', '.join(strategy_flags)}. Fix: drop the sampling flags or --greedy")
    num = args.num if args.num is not None else (min(20, args.beam or 20) if task.is_reber else 1)
    with user_errors(_FLAGS):  # a bad value names the flag the user typed, not the config field
        return GenerationConfig(
            max_length=args.length if args.length is not None else task.max_length, greedy=args.greedy,
            temperature=args.temperature, top_k=args.top_k, top_p=args.top_p, beam=args.beam,
            length_penalty=args.length_penalty, num_samples=num, seed=args.seed, end_token=task.end_token,
            end_count=task.end_count,
        )


class _Printer:
    """Streams a sampling run: characters of a single sample, or whole samples as they complete."""

    def __init__(self, generator: Generator, task: DecodingTask, prompt: str, num: int, out: TextIO) -> None:
        self.codec = generator.codec
        self.task, self.prompt, self.out = task, prompt, out
        self.single = num == 1
        self.texts = [[] for _ in range(num)]  # generated characters per row
        self.printed = [False] * num

    def start(self) -> None:
        if self.single and not self.task.is_reber:
            self.out.write(self.prompt)
            self.out.flush()

    def __call__(self, tokens: Tensor, live: Tensor, done: Tensor) -> None:
        for row in live.nonzero().flatten().tolist():
            char = self.codec.decode([int(tokens[row])])
            self.texts[row].append(char)
            if self.single and not self.task.is_reber:
                self.out.write(char)
                self.out.flush()
        for row in done.nonzero().flatten().tolist():
            if not self.printed[row]:
                self.finish(row)

    def finish(self, row: int) -> None:
        self.printed[row] = True
        text = self.prompt + "".join(self.texts[row])
        if self.task.is_reber:
            ok = self.task.valid(text)
            self.out.write(f"{text:<24} {'valid' if ok else 'INVALID'}\n")
        elif self.single:
            self.out.write("\n")
        else:
            self.out.write(f"--- sample {row + 1}\n{text}\n")
        self.out.flush()

    def close(self) -> None:
        for row, printed in enumerate(self.printed):
            if not printed:
                self.finish(row)


def _print_beam(result: Generation, task: DecodingTask, out: TextIO) -> None:
    for rank, (text, logprob, score) in enumerate(zip(result.texts, result.logprobs, result.scores), start=1):
        verdict = f"  {'valid' if task.valid(text) else 'INVALID'}" if task.is_reber else ""
        out.write(f"--- hypothesis {rank}: logprob {logprob:.4f}, score {score:.4f}{verdict}\n{text}\n")
    out.flush()


def _summary(result: Generation, task: DecodingTask, args: argparse.Namespace,
             config: GenerationConfig) -> dict[str, Any]:
    samples = []
    for i, (text, logprob, finished) in enumerate(zip(result.texts, result.logprobs, result.finished)):
        sample: dict[str, Any] = {"text": text, "logprob": logprob, "finished": finished}
        if task.is_reber:
            sample["valid"] = task.valid(text)
        if result.scores is not None:
            sample["score"] = result.scores[i]
        samples.append(sample)
    summary: dict[str, Any] = {"samples": samples, "checkpoint": str(args.checkpoint), "task": task.name,
                               "strategy": config.strategy, "seed": result.seed, "constrained": args.constrained,
                               "max_length": config.max_length, "temperature": config.temperature,
                               "top_k": config.top_k, "top_p": config.top_p, "beam": config.beam}
    if task.is_reber:
        summary["valid_fraction"] = sum(s["valid"] for s in samples) / len(samples)
    return summary


def _generate(args: argparse.Namespace, out: TextIO) -> dict[str, Any]:
    from rnnkit.generation import from_checkpoint
    from rnnkit.training.run_state import CHECKPOINT_DIR, is_run_dir

    path = args.checkpoint / CHECKPOINT_DIR if is_run_dir(args.checkpoint) else args.checkpoint
    from rnnkit.cli.sample_tokens import kind_of, run_tokens  # word LMs and seq2seq models (issue 14)
    from rnnkit.training.checkpoint import load_checkpoint

    from rnnkit.training.device import resolve_device

    with user_errors({**_FLAGS, "device": "--device"}):
        checkpoint = load_checkpoint(path, device=resolve_device(args.device))
        if kind_of(checkpoint) is not None:
            return run_tokens(args, checkpoint, kind_of(checkpoint), out)
        generator, task = from_checkpoint(checkpoint, grammar=args.grammar, constrained=args.constrained)
    config = _config(args, task)
    prompt = args.prompt if args.prompt is not None else task.prompt
    if prompt is None:
        raise CLIError("--prompt: expected a prompt (this model's vocabulary has no newline to start from), but "
                       "received nothing. Fix: pass e.g. --prompt 'The '")
    with user_errors(_FLAGS):
        generator.codec.encode(prompt, "prompt")  # a bad character fails here, before anything is printed
        if config.beam is not None:
            result = generator.generate(prompt, config)
            _print_beam(result, task, out)
        else:
            printer = _Printer(generator, task, prompt, config.num_samples, out)
            printer.start()
            result = generator.generate(prompt, config, on_token=printer)
            printer.close()
    summary = _summary(result, task, args, config)
    if task.is_reber:
        valid = sum(s["valid"] for s in summary["samples"])
        out.write(f"valid: {valid} of {len(result)} words ({100 * summary['valid_fraction']:.1f}%)\n")
    return summary


class _Quiet:
    """Swallows everything but the Reber summary line (``--quiet``)."""

    def write(self, text: str) -> None:
        if text.startswith("valid: "):
            sys.stdout.write(text)

    def flush(self) -> None:
        sys.stdout.flush()


class _Silent:
    """Swallows all output (``--json -``: stdout holds the JSON only)."""

    def write(self, text: str) -> None:
        pass

    def flush(self) -> None:
        pass


def run(args: argparse.Namespace) -> int:
    """Sample as ``args`` says; CLIError (one line, exit code 2 in ``rnnkit.cli.main``) on bad input."""
    check_writable_file(args.json)
    out: Any = _Silent() if str(args.json) == "-" else _Quiet() if args.quiet else sys.stdout
    summary = _generate(args, out)
    write_json(args.json, summary)
    return 0
