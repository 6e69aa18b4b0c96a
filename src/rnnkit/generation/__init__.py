"""Generation: step-wise decoding with a carried state, sampling strategies, beam search, constraints.

    >>> import torch
    >>> from rnnkit.generation import Generator
    >>> from rnnkit.models import LanguageModel, LanguageModelConfig, RNNConfig
    >>> lm = LanguageModel(LanguageModelConfig(vocab_size=4, embedding_size=4, rnn=RNNConfig(hidden_size=8)))
    >>> out = Generator(lm, vocab="abcd").generate("ab", max_length=5, top_k=2, num_samples=2, seed=0)
    >>> [len(text) for text in out.texts]                  # the prompt + 5 new characters
    [7, 7]
"""
from rnnkit.generation.beam import Hypothesis, beam_search
from rnnkit.generation.codec import Codec
from rnnkit.generation.config import Generation, GenerationConfig
from rnnkit.generation.constraints import AutomatonConstraint, Constraint, FunctionConstraint, as_constraint
from rnnkit.generation.decoder import Generator, OnToken
from rnnkit.generation.protocol import DecodingModel, check_decoding_model, prime, select_state
from rnnkit.generation.sampling import keep_top_k, keep_top_p, pick, process, scale_temperature
from rnnkit.generation.setup import DecodingTask, from_checkpoint

__all__ = [
    "AutomatonConstraint", "Codec", "Constraint", "DecodingModel", "DecodingTask", "FunctionConstraint", "Generation",
    "GenerationConfig", "Generator", "Hypothesis", "OnToken", "as_constraint", "beam_search", "check_decoding_model",
    "from_checkpoint", "keep_top_k", "keep_top_p", "pick", "prime", "process", "scale_temperature", "select_state",
]
