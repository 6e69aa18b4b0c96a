"""``Generator``: step-wise decoding with a carried state: sampling, greedy and beam search.

The prompt is read once on the whole-sequence path (``model(prompt)``); every new token then
costs one ``model.step``, a single cell step per layer, whatever the length already generated:
the prefix is never run again. A batch of samples shares that one prompt pass.

Example:
    >>> import torch
    >>> from rnnkit.data import reber
    >>> from rnnkit.models import RNNConfig, SequenceTagger, TaggerConfig
    >>> model = SequenceTagger(TaggerConfig(vocab_size=7, rnn=RNNConfig(hidden_size=8)))
    >>> gen = Generator(model, vocab=reber.SYMBOLS, constraint=reber.automaton())
    >>> out = gen.generate("B", num_samples=3, end_token="E", seed=0)
    >>> all(reber.in_grammar(text) for text, done in zip(out.texts, out.finished) if done)
    True
"""
from __future__ import annotations

import secrets
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import torch
from torch import Tensor, nn

from rnnkit.data.automaton import Automaton
from rnnkit.data.vocab import Vocab
from rnnkit.errors import bad_argument
from rnnkit.generation.beam import beam_search
from rnnkit.generation.codec import Codec
from rnnkit.generation.config import Generation, GenerationConfig, with_options
from rnnkit.generation.constraints import Constraint, as_constraint
from rnnkit.generation.protocol import check_decoding_model, model_device, prime
from rnnkit.generation.sampling import pick, process

__all__ = ["Generator", "OnToken"]

OnToken = Callable[[Tensor, Tensor, Tensor], None]  # (tokens (N,), live (N,) bool, done (N,) bool) -> None
ConstraintLike = Constraint | Automaton | Callable[[list[int]], Iterable[int]] | None


class Generator:
    """Decode a next-token model: ``Generator(model, vocab=..., constraint=...).generate(prompt, ...)``.

    model: a decoding model (see ``rnnkit.generation.protocol``), e.g. a LanguageModel.
    vocab: a ``Vocab`` or an alphabet string such as ``"BTSXPVE"``; needed for text prompts,
        character end tokens and ``Generation.texts``.
    constraint: None, a ``Constraint``, an ``Automaton`` (its symbols are looked up in ``vocab``;
        without one, symbol positions are token ids) or a callable ``prefix ids -> allowed ids``.
    """

    def __init__(self, model: nn.Module, *, vocab: Vocab | str | Codec | None = None,
                 constraint: ConstraintLike = None) -> None:
        self.model = check_decoding_model(model)
        self.codec = None if vocab is None else Codec.of(vocab)
        if constraint is not None and not (isinstance(constraint, (Constraint, Automaton)) or callable(constraint)):
            as_constraint(constraint, 1)  # raises the error that names the accepted kinds
        self.constraint = constraint
        size = getattr(getattr(model, "config", None), "vocab_size", None)
        if self.codec is not None and isinstance(size, int) and len(self.codec) != size:
            raise bad_argument("vocab", f"{size} tokens, the model's vocab_size", f"{len(self.codec)} tokens",
                               "pass the vocabulary the model was trained with")

    # ------------------------------------------------------------------ public API
    def generate(self, prompt: str | Tensor | Sequence[int], config: GenerationConfig | None = None, *,
                 on_token: OnToken | None = None, **options: Any) -> Generation:
        """Continue ``prompt`` (text, ids (P,) or (B, P)); ``options`` override fields of ``config``.

        ``on_token(tokens, live, done)`` is called after every sampling step (not for beam search)
        with the tokens of this step (N,), which rows really emitted one, and which rows are
        complete; that is how the CLI streams. Samples come prompt-major: all samples of
        prompt 0 first.
        """
        cfg = with_options(config, options)
        device = model_device(self.model)
        prompts = self._prompt_ids(prompt).to(device)  # (B, P)
        end = self._end_id(cfg.end_token)
        seed = cfg.seed if cfg.seed is not None else secrets.randbits(63)
        was_training = self.model.training
        self.model.eval()  # no dropout while decoding
        try:
            with torch.inference_mode():
                if cfg.beam is not None:
                    return self._beam(prompts, cfg, end, seed)
                return self._sample(prompts, cfg, end, seed, on_token)
        finally:
            self.model.train(was_training)

    # ------------------------------------------------------------------ sampling and greedy
    def _sample(self, prompts: Tensor, cfg: GenerationConfig, end: int | None, seed: int,
                on_token: OnToken | None) -> Generation:
        model, n = self.model, cfg.num_samples
        logits, state = prime(model, prompts, repeat=n)  # (N, V)
        rows = prompts.repeat_interleave(n, dim=0)  # (N, P)
        N, V = logits.shape
        constraint = self._constraint(V)
        cstate = constraint.start(rows) if constraint is not None else None
        generator = torch.Generator(device=logits.device)
        generator.manual_seed(seed)
        done = torch.zeros(N, dtype=torch.bool, device=logits.device)  # (N,) complete rows
        lengths = torch.full((N,), cfg.max_length, dtype=torch.int64, device=logits.device)  # (N,)
        can_end = end is not None or constraint is not None
        seen = torch.zeros(N, dtype=torch.int64, device=logits.device)  # (N,)
        steps: list[Tensor] = []
        step_logprobs: list[Tensor] = []
        for t in range(cfg.max_length):
            logp = model.next_log_probs(logits)  # (N, V)
            allowed = None
            if constraint is not None:
                allowed = constraint.allowed(cstate)  # (N, V)
                complete = ~allowed.any(dim=-1) & ~done  # (N,) the constraint allows nothing more
                if bool(complete.any()):
                    lengths = torch.where(complete, t, lengths)
                    done = done | complete
                    if bool(done.all()):
                        break
                allowed = allowed | done.unsqueeze(1)  # finished rows draw a placeholder, never kept
            weights = process(logp, temperature=cfg.temperature, top_k=cfg.top_k, top_p=cfg.top_p, allowed=allowed)
            tokens = pick(weights, greedy=cfg.greedy, generator=generator)  # (N,)
            steps.append(tokens)
            step_logprobs.append(logp.gather(1, tokens.unsqueeze(1)).squeeze(1))  # (N,)
            if can_end:
                live = ~done
                if constraint is not None:
                    cstate = constraint.advance(cstate, tokens, live)
                if end is not None:
                    seen = seen + ((tokens == end) & live)  # (N,) end tokens generated so far
                    ended = (seen >= cfg.end_count) & live  # (N,)
                    lengths = torch.where(ended, t + 1, lengths)
                    done = done | ended
                if on_token is not None:
                    on_token(tokens, live, done)
                if bool(done.all()):
                    break
            elif on_token is not None:
                on_token(tokens, ~done, done)
            if t + 1 < cfg.max_length:
                logits, state = model.step(tokens, state)  # (N, V)
        if steps:
            tokens_all = torch.stack(steps, dim=1)  # (N, T)
            logprobs_all = torch.stack(step_logprobs, dim=1).double()  # (N, T)
        else:
            tokens_all = rows.new_zeros((N, 0))
            logprobs_all = torch.zeros((N, 0), dtype=torch.float64, device=rows.device)
        lengths = lengths.clamp_max(tokens_all.shape[1])  # rows still running when the loop ended
        if constraint is not None and not bool(done.all()):  # complete exactly at max_length?
            done = done | ~constraint.allowed(cstate).any(dim=-1)
        keep = torch.arange(tokens_all.shape[1], device=rows.device) < lengths.unsqueeze(1)  # (N, T)
        totals = torch.where(keep, logprobs_all, 0.0).sum(dim=1)  # (N,)
        finished = done
        seqs = [tokens_all[i, : int(lengths[i])].tolist() for i in range(N)]
        return self._result(rows, seqs, [logprobs_all[i, : int(lengths[i])].tolist() for i in range(N)],
                            totals.tolist(), finished.tolist(), None, seed)

    # ------------------------------------------------------------------ beam search
    def _beam(self, prompts: Tensor, cfg: GenerationConfig, end: int | None, seed: int) -> Generation:
        rows, seqs, token_lps, totals, finished, scores = [], [], [], [], [], []
        for b in range(prompts.shape[0]):
            prompt = prompts[b: b + 1]  # (1, P)
            logits, state = prime(self.model, prompt)  # (1, V)
            constraint = self._constraint(logits.shape[-1])
            cstate = constraint.start(prompt) if constraint is not None else None
            hyps = beam_search(self.model, logits, state, width=cfg.beam, max_length=cfg.max_length, end=end,
                               end_count=cfg.end_count, length_penalty=cfg.length_penalty, constraint=constraint,
                               constraint_state=cstate)
            for hyp in hyps[: cfg.num_samples]:
                rows.append(prompt[0])
                seqs.append(hyp.tokens)
                token_lps.append(hyp.token_logprobs)
                totals.append(hyp.logprob)
                finished.append(hyp.finished)
                scores.append(hyp.score)
        return self._result(torch.stack(rows), seqs, token_lps, totals, finished, scores, seed)

    # ------------------------------------------------------------------ helpers
    def _result(self, rows: Tensor, seqs: list[list[int]], token_lps: list[list[float]], totals: list[float],
                finished: list[bool], scores: list[float] | None, seed: int) -> Generation:
        prompts = rows.tolist()
        texts = None
        if self.codec is not None:
            texts = [self.codec.decode(p + s) for p, s in zip(prompts, seqs)]
        return Generation(prompts=prompts, tokens=seqs, token_logprobs=token_lps, logprobs=totals,
                          finished=finished, texts=texts, scores=scores, seed=seed)

    def _constraint(self, vocab_size: int) -> Constraint | None:
        token_of = None
        if self.codec is not None:
            codec = self.codec
            token_of = lambda symbol: codec.id_of(symbol, "constraint")  # noqa: E731
        return as_constraint(self.constraint, vocab_size, token_of)

    def _end_id(self, end: int | str | None) -> int | None:
        if isinstance(end, str):
            if self.codec is None:
                raise bad_argument("end_token", "a token id (the Generator has no vocabulary to look "
                                   f"{end!r} up in)", end, "pass vocab= to the Generator, or the id of the end token")
            return self.codec.id_of(end, "end_token")
        return end

    def _prompt_ids(self, prompt: str | Tensor | Sequence[int]) -> Tensor:
        """The prompt as int64 ids (B, P), checked."""
        if isinstance(prompt, str):
            if self.codec is None:
                raise bad_argument("prompt", "token ids (the Generator has no vocabulary to encode text with)",
                                   prompt, "pass vocab= to the Generator, or the prompt as a tensor of ids")
            ids = self.codec.encode(prompt, "prompt").unsqueeze(0)  # (1, P)
        elif isinstance(prompt, Tensor):
            ids = prompt.unsqueeze(0) if prompt.dim() == 1 else prompt
            if ids.dim() != 2 or ids.dtype not in (torch.int64, torch.int32, torch.int16, torch.uint8):
                raise bad_argument("prompt", "integer token ids of shape (P,) or (B, P)", prompt,
                                   "encode the text with the model's vocabulary")
            ids = ids.to(torch.int64)
        elif isinstance(prompt, (list, tuple)) and all(isinstance(i, int) and not isinstance(i, bool) for i in prompt):
            ids = torch.tensor([list(prompt)], dtype=torch.int64)  # (1, P)
        else:
            raise bad_argument("prompt", "text, a list of token ids or an int tensor (P,) / (B, P)", prompt,
                               "pass e.g. prompt='ROMEO:' with vocab=..., or torch.tensor([3, 1, 4])")
        if ids.shape[1] == 0 or ids.shape[0] == 0:
            raise bad_argument("prompt", "at least one token (the model needs an input to predict from)", "''"
                               if isinstance(prompt, str) else prompt,
                               "start from a character the model knows, e.g. '\\n' or 'B' for the Reber grammars")
        size = getattr(getattr(self.model, "config", None), "vocab_size", None)
        if isinstance(size, int) and (int(ids.min()) < 0 or int(ids.max()) >= size):
            raise bad_argument("prompt", f"token ids in 0..{size - 1}", f"ids in {int(ids.min())}..{int(ids.max())}",
                               "encode the prompt with the model's vocabulary")
        return ids
