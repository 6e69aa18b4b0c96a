"""``rnnkit sample``: generate from a checkpoint, streaming to the terminal.

    rnnkit sample runs/text/checkpoint --prompt "ROMEO:" --length 300 --temperature 0.8
    rnnkit sample runs/reber/checkpoint --num 1000 --seed 0 --json samples.json
    rnnkit sample runs/embedded-reber/checkpoint --num 1000 --constrained
    rnnkit sample runs/text/checkpoint --prompt "The " --beam 8 --num 3 --length 40

Text models stream characters as they come (one sample at a time; with ``--num`` > 1 each
sample is printed when it is complete). Reber models print every word with its grammar verdict
as soon as it ends, then the share of valid words. ``--json PATH`` writes ``samples`` (a list of
``{"text", "logprob"}``, the text including the prompt, the log-probability the model's own,
see ``rnnkit.generation.config``) and, for Reber models, ``valid_fraction``.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any, TextIO

from torch import Tensor

from rnnkit.errors import bad_argument
from rnnkit.generation.config import Generation, GenerationConfig
from rnnkit.generation.decoder import Generator
from rnnkit.generation.setup import GRAMMARS, DecodingTask, from_checkpoint

__all__ = ["add_parser", "run"]


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Register ``sample`` on the ``rnnkit`` command's subparsers."""
    p = subparsers.add_parser("sample", help="generate text or Reber words from a checkpoint",
                              description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("checkpoint", help="a checkpoint folder written by rnnkit train (or rnnkit.save)")
    p.add_argument("--prompt", default=None,
                   help="text to continue (default: 'B' for Reber models, a newline for text models)")
    p.add_argument("--length", type=int, default=None,
                   help="tokens to generate at most per sample (default: 500 for text, 200 for Reber)")
    p.add_argument("--temperature", type=float, default=1.0, help="> 0; below 1 is more conservative (default 1)")
    p.add_argument("--top-k", type=int, default=None, help="sample among the k most likely tokens only")
    p.add_argument("--top-p", type=float, default=None, help="sample within the nucleus of this mass, in (0, 1]")
    p.add_argument("--greedy", action="store_true", help="take the most likely token at every step")
    p.add_argument("--beam", type=int, default=None, help="beam search of this width instead of sampling")
    p.add_argument("--length-penalty", type=float, default=1.0,
                   help="beam: rank by logprob / length**penalty (default 1; 0 ranks by raw logprob)")
    p.add_argument("--num", type=int, default=None,
                   help="samples to draw, or beam hypotheses to print (default: 20 for Reber, 1 for text)")
    p.add_argument("--seed", type=int, default=None, help="makes the run reproducible (default: fresh randomness)")
    p.add_argument("--constrained", action="store_true",
                   help="Reber: mask every step with the grammar, so every word is valid")
    p.add_argument("--grammar", choices=GRAMMARS, default=None,
                   help="Reber: the grammar, for a checkpoint whose metadata does not name it")
    p.add_argument("--json", metavar="PATH", default=None, help="write the samples and their log-probabilities here")
    p.set_defaults(run=run)
    return p


_FLAGS = {"max_length": "--length", "temperature": "--temperature", "top_k": "--top-k", "top_p": "--top-p",
          "beam": "--beam", "length_penalty": "--length-penalty", "num_samples": "--num", "seed": "--seed"}


def _config(args: argparse.Namespace, task: DecodingTask) -> GenerationConfig:
    """The GenerationConfig the flags ask for (the CLI fills the same dataclass as the API)."""
    strategy_flags = [flag for flag, on in (("--temperature", args.temperature != 1.0), ("--top-k", args.top_k is not
                                            None), ("--top-p", args.top_p is not None)) if on]
    if args.beam is not None and args.greedy:
        raise bad_argument("--beam", "no --greedy with beam search (--beam 1 is greedy)", "--beam with --greedy",
                           "drop one of the two")
    if args.beam is not None and strategy_flags:
        raise bad_argument("--beam", "no sampling flags with beam search (it is deterministic)",
                           f"--beam with {', '.join(strategy_flags)}", "drop the sampling flags or --beam")
    if args.greedy and strategy_flags:
        raise bad_argument("--greedy", "no sampling flags with --greedy", f"--greedy with {', '.join(strategy_flags)}",
                           "drop the sampling flags or --greedy")
    num = args.num if args.num is not None else (min(20, args.beam or 20) if task.is_reber else 1)
    try:
        return GenerationConfig(
            max_length=args.length if args.length is not None else task.max_length, greedy=args.greedy,
            temperature=args.temperature, top_k=args.top_k, top_p=args.top_p, beam=args.beam,
            length_penalty=args.length_penalty, num_samples=num, seed=args.seed, end_token=task.end_token,
            end_count=task.end_count,
        )
    except ValueError as error:  # name the flag the user typed, not the config field
        field, _, rest = str(error).partition(": ")
        raise ValueError(f"{_FLAGS.get(field, field)}: {rest}") from None


class _Printer:
    """Streams a sampling run: characters of a single sample, or whole samples as they complete."""

    def __init__(self, generator: Generator, task: DecodingTask, prompt: str, num: int, out: TextIO) -> None:
        self.codec = generator.codec
        self.task, self.prompt, self.out = task, prompt, out
        self.single = num == 1
        self.texts = [[] for _ in range(num)]  # generated characters per row
        self.printed = [False] * num
        self.valid = 0

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
            self.valid += ok
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
    generator, task = from_checkpoint(args.checkpoint, grammar=args.grammar, constrained=args.constrained)
    config = _config(args, task)
    prompt = args.prompt if args.prompt is not None else task.prompt
    if prompt is None:
        raise bad_argument("--prompt", "a prompt (this model's vocabulary has no newline to start from)", "nothing",
                           "pass e.g. --prompt 'The '")
    generator.codec.encode(prompt, "--prompt")  # a bad character fails here, before anything is printed
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


def run(args: argparse.Namespace) -> int:
    """Sample as ``args`` says; 0 on success, 2 (one line on stderr) on bad input."""
    try:
        summary = _generate(args, sys.stdout)
        if args.json is not None:
            path = Path(args.json)
            if path.parent != Path(""):
                path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps(summary, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    except (ValueError, OSError) as error:
        print(f"rnnkit sample: error: {error}".replace("\n", " "), file=sys.stderr)
        return 2
    return 0
