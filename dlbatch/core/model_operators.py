"""HALCON's operators as DLModel methods, PyTorch style: `model.train_batch(samples)` is
`train_dl_model_batch(model, samples)`, and so on for apply, evaluate and write. Each method
only hands the model to the function that does the work."""
from __future__ import annotations

from .infer import apply_model, evaluate_model
from .onnx_export import write_model_file
from .train import train_step


class OperatorMethods:
    """train_batch, apply, evaluate and write for DLModel (a mixin)."""

    def train_batch(self, samples) -> dict[str, float]:
        """One weight update (`dlbatch.train_dl_model_batch`).

        Args:
            samples: exactly batch_size * batch_size_multiplier preprocessed, labelled samples.

        Returns:
            total_loss, one loss_<name> per loss term, and loss_regularization.

        Raises:
            DLSampleError: the wrong number of samples, a missing key, a bad shape or label.
            DLNumericError: a non-finite loss or gradient; the model is left unchanged.
            DLBackendError: an inference-only backend.
        """
        return train_step(self, samples)

    def apply(self, samples) -> list[dict]:
        """Inference (`dlbatch.apply_dl_model`).

        Args:
            samples: preprocessed sample dicts (labels are not needed).

        Returns:
            One result dict per sample, with the model type's result keys.

        Raises:
            DLSampleError: a missing image or a wrong image shape.
        """
        return apply_model(self, samples)

    def evaluate(self, samples) -> dict:
        """Apply and measure (`dlbatch.evaluate_dl_model`).

        Args:
            samples: preprocessed sample dicts with the model type's labels.

        Returns:
            The model type's measures (e.g. top1_error, mean_iou, mean_ap).

        Raises:
            DLSampleError: a missing or invalid label.
        """
        return evaluate_model(self, samples)

    def write(self, path) -> None:
        """Write the model to one .onnx file, atomically (`dlbatch.write_dl_model`).

        Args:
            path: the file to write (replaced if it exists).

        Raises:
            DLModelFileError: the file cannot be written (an old file is then intact).
        """
        write_model_file(self, path)
