"""The options of a decoding run (``GenerationConfig``) and what it returns (``Generation``).

The CLI (``rnnkit sample``) fills the same config the Python API takes.

Decisions worth knowing:

* **Greedy is its own switch.** ``temperature`` must be > 0 (0 or less is an error); the most
  likely token at every step is ``greedy=True``. As the temperature goes to 0, sampling tends
  to greedy decoding (the tests pin that).
* **Log-probabilities are the model's own.** ``Generation.logprobs`` sums
  ``log p_model(token | prompt, earlier tokens)`` over the generated tokens, before
  temperature, top-k, top-p or a constraint reshaped the distribution. So the same text gets
  the same log-probability however it was produced, and it can be compared across settings.
* **Beam scores are length-normalised**: ``logprob / length ** length_penalty`` ranks the
  hypotheses (``length_penalty=0`` ranks by the raw log-probability).

Example:
    >>> GenerationConfig(max_length=50, top_k=5, seed=0).top_k
    5
    >>> GenerationConfig(temperature=0)
    Traceback (most recent call last):
    ...
    rnnkit.errors.BadArgument: temperature: expected a finite number > 0 ...
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any

from rnnkit.errors import bad_argument
from rnnkit.generation.sampling import check_beam, check_temperature, check_top_k, check_top_p

__all__ = ["Generation", "GenerationConfig", "with_options"]


def _positive_int(name: str, value: object, example: str) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise bad_argument(name, "an int >= 1", value, f"pass e.g. {name}={example}")


@dataclass(frozen=True)
class GenerationConfig:
    """How to decode. Sampling unless ``greedy`` or ``beam`` says otherwise."""

    max_length: int = 200  # tokens generated at most per sample, the end token included
    greedy: bool = False  # the most likely token at every step; takes no temperature/top_k/top_p
    temperature: float = 1.0  # > 0: sample from softmax(log p / temperature); 1 samples the model as it is
    top_k: int | None = None  # None: no cut; k: sample among the k most likely tokens only
    top_p: float | None = None  # None: no cut; p in (0, 1]: sample within the nucleus of mass p
    beam: int | None = None  # None: sample (or greedy); W: beam search of width W (deterministic)
    length_penalty: float = 1.0  # beam only: rank by logprob / length**length_penalty; 0 = raw logprob
    num_samples: int = 1  # samples per prompt; with beam, the best hypotheses returned (<= beam)
    seed: int | None = None  # None: fresh randomness; an int makes the run reproducible
    end_token: int | str | None = None  # id (or character) that ends a sample, kept in it; None: run to max_length
    end_count: int = 1  # a sample ends at its end_count-th generated end token (2 for embedded Reber: B..E..E)

    def __post_init__(self) -> None:
        _positive_int("max_length", self.max_length, "200")
        _positive_int("num_samples", self.num_samples, "10")
        _positive_int("end_count", self.end_count, "1")
        if not isinstance(self.greedy, bool):
            raise bad_argument("greedy", "True or False", self.greedy, "pass greedy=True for argmax decoding")
        object.__setattr__(self, "temperature", check_temperature(self.temperature))
        check_top_k(self.top_k)
        object.__setattr__(self, "top_p", check_top_p(self.top_p))
        check_beam(self.beam)
        penalty = self.length_penalty
        if isinstance(penalty, bool) or not isinstance(penalty, (int, float)) or not math.isfinite(penalty) \
                or penalty < 0:
            raise bad_argument("length_penalty", "a finite number >= 0", penalty,
                               "pass 1.0 (mean log-probability per token) or 0 (raw log-probability)")
        sampling = [name for name, on in (("temperature", self.temperature != 1.0), ("top_k", self.top_k is not None),
                                          ("top_p", self.top_p is not None)) if on]
        if self.greedy and sampling:
            raise bad_argument(", ".join(sampling), "no sampling options with greedy=True (greedy always takes "
                               "the most likely token)", f"greedy=True with {', '.join(sampling)} set",
                               "drop greedy to sample, or drop the sampling options")
        if self.beam is not None and (sampling or self.greedy):
            raise bad_argument("beam", "no sampling options and no greedy (beam search is deterministic)",
                               f"beam={self.beam} with {', '.join(sampling + ['greedy'] * self.greedy)}",
                               "use beam alone, or sample without beam (beam=1 is greedy)")
        if self.beam is not None and self.num_samples > self.beam:
            raise bad_argument("num_samples", f"at most beam={self.beam} hypotheses", self.num_samples,
                               f"ask for num_samples <= {self.beam} or widen the beam")
        if self.seed is not None and (isinstance(self.seed, bool) or not isinstance(self.seed, int)
                                      or not 0 <= self.seed < 2 ** 63):
            raise bad_argument("seed", "None or an int in [0, 2**63)", self.seed, "pass e.g. seed=0")
        end = self.end_token
        if end is not None and not ((isinstance(end, int) and not isinstance(end, bool) and end >= 0)
                                    or (isinstance(end, str) and len(end) == 1)):
            raise bad_argument("end_token", "None, a token id >= 0 or a single character", end,
                               "pass e.g. end_token='E' for the Reber grammars")

    @property
    def strategy(self) -> str:
        """'beam', 'greedy' or 'sample'."""
        return "beam" if self.beam is not None else "greedy" if self.greedy else "sample"


def with_options(config: GenerationConfig | None, options: dict[str, Any]) -> GenerationConfig:
    """``config`` (or the defaults) with some fields replaced; ValueError naming an unknown option."""
    if config is not None and not isinstance(config, GenerationConfig):
        raise bad_argument("config", "None or a GenerationConfig", config, "build one with GenerationConfig(...)")
    fields = [f.name for f in dataclasses.fields(GenerationConfig)]
    unknown = sorted(set(options) - set(fields))
    if unknown:
        raise bad_argument(unknown[0], f"a GenerationConfig field ({', '.join(fields)})", repr(unknown[0]),
                           "check the spelling of the option")
    return dataclasses.replace(config or GenerationConfig(), **options)


@dataclass(frozen=True)
class Generation:
    """The samples (or beam hypotheses) of one run, best hypothesis first for beam search."""

    prompts: list[list[int]]  # the prompt ids each sample continued
    tokens: list[list[int]]  # the generated ids of each sample, the end token included
    token_logprobs: list[list[float]]  # the model's log-probability of each generated token
    logprobs: list[float]  # their sum per sample: log p_model(generated | prompt)
    finished: list[bool]  # True: ended by the end token or a complete constraint; False: cut at max_length
    texts: list[str] | None = None  # prompt + generated text per sample, when the decoder knows a vocabulary
    scores: list[float] | None = None  # beam search only: the length-normalised ranking score
    seed: int | None = None  # the seed the run used (drawn fresh when the config had none)

    def __len__(self) -> int:
        return len(self.tokens)
