"""``rnnkit sample`` for token-level checkpoints: word-level language models and sequence-to-sequence models.

* A ``--task words`` checkpoint generates whole sentences from ``<s>`` to ``</s>``
  (:func:`rnnkit.generation.sentences.generate_sentences`): ``--min-length`` words at least,
  never ``<unk>`` unless ``--allow-unk``, with any strategy (sampling, ``--greedy``, ``--beam``).
  ``--prompt`` gives the first words.
* A ``translate``/``reverse``/``add``/``dates`` checkpoint translates ``--prompt`` (the source
  text), greedy by default or with ``--beam W``.

``--json`` writes ``samples`` as ``{"text", "logprob"}`` (plus ``finished``), as for text models.
"""
from __future__ import annotations

import argparse
from typing import Any, TextIO

from rnnkit.cli.common import CLIError, user_errors

__all__ = ["kind_of", "run_tokens"]

_FLAGS = {"max_length": "--length", "temperature": "--temperature", "top_k": "--top-k", "top_p": "--top-p",
          "beam": "--beam", "length_penalty": "--length-penalty", "num_samples": "--num", "seed": "--seed",
          "prompt": "--prompt", "min_length": "--min-length"}


def kind_of(ckpt: Any) -> str | None:
    """"words" or "pairs" for a token-level checkpoint (read from its vocabulary), else None."""
    data = ckpt.vocab
    if isinstance(data, dict) and data.get("kind") == "words":
        return "words"
    if isinstance(data, dict) and data.get("format") == "rnnkit.pair_vocab":
        return "pairs"
    return None


def run_tokens(args: argparse.Namespace, ckpt: Any, kind: str, out: TextIO) -> dict[str, Any]:
    """Sample sentences or translate with a loaded checkpoint, print them to ``out``; the JSON summary."""
    from rnnkit.data.pairs import TokenVocab, detokenize, tokenize

    model = ckpt.model.eval()
    strategy = "beam" if args.beam is not None else "greedy" if args.greedy or kind == "pairs" else "sample"
    samples: list[dict[str, Any]] = []
    if kind == "words":
        from rnnkit.generation.sentences import generate_sentences

        vocab = TokenVocab.from_json({k: v for k, v in ckpt.vocab.items() if k != "kind"})
        options: dict[str, Any] = dict(seed=args.seed, length_penalty=args.length_penalty)
        if args.beam is not None:
            options["beam"] = args.beam
        elif args.greedy:
            options["greedy"] = True
        else:
            options.update(temperature=args.temperature, top_k=args.top_k, top_p=args.top_p)
        num = args.num if args.num is not None else (1 if args.beam is None else min(args.beam, 5))
        with user_errors(_FLAGS):
            sentences = generate_sentences(model, vocab, num_samples=num, min_length=args.min_length,
                                           allow_unk=args.allow_unk, max_length=args.length or 100,
                                           prompt=tokenize(args.prompt, "words") if args.prompt else None, **options)
        for s in sentences:
            out.write(f"{s.text}\n" if s.finished else f"{s.text} [cut at --length]\n")
            samples.append({"text": s.text, "logprob": s.logprob, "finished": s.finished, "tokens": s.tokens})
    else:
        import torch

        if not args.prompt:
            raise CLIError("--prompt: expected the source text to translate, but received nothing. "
                           "Fix: pass e.g. --prompt 'quatre-vingt-dix-sept'")
        level = ckpt.vocab["tokens"]
        source_vocab = TokenVocab.from_json(ckpt.vocab["source"])
        target_vocab = TokenVocab.from_json(ckpt.vocab["target"])
        tokens = tokenize(args.prompt, level)
        unknown = [t for t in tokens if t not in source_vocab.index]
        from rnnkit.training.tasks import model_device

        device = model_device(model)  # --device
        ids = torch.tensor([source_vocab.encode(tokens)], device=device)  # (1, S)
        length = torch.tensor([ids.shape[1]], device=device)  # (1,)
        with user_errors(_FLAGS):
            result = model.translate(ids, length, max_length=args.length or 100,
                                     beam=args.beam, length_penalty=args.length_penalty)
        text = detokenize(target_vocab.decode(result[0]), level)
        target = result[0] + [model.config.eos_id]
        with torch.no_grad():
            logits, _ = model(ids, length, torch.tensor([[model.config.bos_id] + target[:-1]], device=device))
        picked = torch.tensor(target, device=device)[:, None]  # (T, 1)
        logprob = float(torch.log_softmax(logits[0].double(), -1).gather(1, picked).sum())
        out.write(text + "\n")
        if unknown:
            out.write(f"({len(unknown)} unknown source token(s) read as <unk>: {' '.join(unknown[:5])})\n")
        samples.append({"text": text, "logprob": logprob, "finished": True, "unknown_source_tokens": len(unknown)})
    out.flush()
    return {"samples": samples, "checkpoint": str(args.checkpoint), "task": kind, "strategy": strategy,
            "seed": args.seed, "min_length": args.min_length, "beam": args.beam}
