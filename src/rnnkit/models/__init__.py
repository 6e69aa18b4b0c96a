"""Ready-made models, each built from the core layers and registered for checkpoints.

Every model keeps a frozen config dataclass as ``model.config`` (its class is
``config_class``) and registers itself with ``@register_model`` in its own module, so
``rnnkit.save``/``rnnkit.load`` rebuild it with no user code.
"""
from rnnkit.checkpoint.registry import model_class, register_model
from rnnkit.models.body import CELLS, RNNConfig, build_rnn
from rnnkit.models.classifier import ClassifierConfig, RegressorConfig, SequenceClassifier, SequenceRegressor
from rnnkit.models.language_model import LanguageModel, LanguageModelConfig
from rnnkit.models.seq2seq import Seq2Seq, Seq2SeqConfig
from rnnkit.models.tagger import SequenceTagger, TaggerConfig

__all__ = [
    "CELLS", "ClassifierConfig", "LanguageModel", "LanguageModelConfig", "RNNConfig", "RegressorConfig", "Seq2Seq",
    "Seq2SeqConfig", "SequenceClassifier", "SequenceRegressor", "SequenceTagger", "TaggerConfig", "build_rnn",
    "model_class", "register_model",
]
