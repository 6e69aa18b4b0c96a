"""Ready-made models, each built from the core layers and registered for checkpoints.

Every model keeps a frozen config dataclass as ``model.config`` (its class is
``config_class``), so ``rnnkit.save``/``rnnkit.load`` rebuild it with no user code.
"""
from rnnkit.layers import GRU, LSTM, RNN
from rnnkit.models.body import CELLS, RNNConfig, build_rnn
from rnnkit.models.classifier import ClassifierConfig, RegressorConfig, SequenceClassifier, SequenceRegressor
from rnnkit.models.language_model import LanguageModel, LanguageModelConfig
from rnnkit.models.registry import model_class, register_model
from rnnkit.models.seq2seq import Seq2Seq, Seq2SeqConfig
from rnnkit.models.tagger import SequenceTagger, TaggerConfig

for _cls, _config in (
    (SequenceTagger, TaggerConfig), (LanguageModel, LanguageModelConfig),
    (SequenceClassifier, ClassifierConfig), (SequenceRegressor, RegressorConfig), (Seq2Seq, Seq2SeqConfig),
):
    _cls.config_class = _config  # type: ignore[attr-defined]
    register_model(_cls)
for _layer in (RNN, LSTM, GRU):  # bare layers save and load too
    register_model(_layer)

__all__ = [
    "CELLS", "ClassifierConfig", "LanguageModel", "LanguageModelConfig", "RNNConfig", "RegressorConfig", "Seq2Seq", "Seq2SeqConfig",
    "SequenceClassifier", "SequenceRegressor", "SequenceTagger", "TaggerConfig", "build_rnn", "model_class",
    "register_model",
]
