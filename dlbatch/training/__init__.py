"""The training procedure: train_dl_model (epochs, change strategies, augmentation,
evaluation, best/final checkpoints, a resumable state) and its progress listeners."""
from .change import ChangeStrategy, parse_change
from .loop import train_dl_model
from .progress import PlainTextProgress, TrainingListener

__all__ = ["train_dl_model", "TrainingListener", "PlainTextProgress", "ChangeStrategy", "parse_change"]
