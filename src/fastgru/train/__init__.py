"""Training sequence models: Trainer (BPTT / truncated BPTT, Adam/RMSprop, clipping, early stopping,
checkpoints with exact resume, DistributedDataParallel), its config, data containers and state I/O.

    from fastgru.train.models import build_model
    from fastgru.train import Trainer, TrainConfig, SequenceData

    model = build_model(input_size=1, hidden_size=32, output_size=12)        # a 12-step forecaster
    history = Trainer(model, TrainConfig(epochs=20, patience=5, out_dir="run")).fit(
        SequenceData(x_train, y_train), SequenceData(x_val, y_val))
"""

from fastgru.train.config import TrainConfig
from fastgru.train.data import Batch, SequenceData, StreamData
from fastgru.train.state import load_state, save_state, seed_everything
from fastgru.train.trainer import Trainer

__all__ = ["Batch", "SequenceData", "StreamData", "TrainConfig", "Trainer", "load_state", "save_state",
           "seed_everything"]
