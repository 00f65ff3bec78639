"""Datasets from disk as the commands need them: checked against the model (type, class ids)
and streamed as preprocessed chunks, so no command holds a whole dataset's images in memory."""
from __future__ import annotations

import warnings
from typing import Iterator, Sequence

import typer

from dlbatch.core.errors import DLParamError

CHUNK = 32  # samples read and preprocessed at a time (then applied in micro-batches of batch_size)
SKIP_BAD_IMAGES_HELP = ("read every image once first and skip (with a warning listing them) the samples whose "
                        "files are missing, corrupt, truncated, too large or of an unreadable mode, instead of "
                        "stopping at the first")


def open_dataset(path: str, skip_bad_images: bool = False, report: bool = True):
    """read_dl_dataset for a command, with the skipped samples as one warning on stderr.

    Args:
        path: the dataset as the user typed it.
        skip_bad_images: passed to read_dl_dataset.
        report: print the warning (False in the other workers of a distributed run, which
            skip the same samples).

    Returns:
        The DLDataset (its skipped_samples lists what was left out).

    Raises:
        DLError: as read_dl_dataset (with skip_bad_images, also when no sample is left).

    Examples:
        >>> from dlbatch.datasets import write_synthetic_dataset
        >>> len(open_dataset(str(write_synthetic_dataset("classification", "opened", num_samples=3))))
        3
    """
    from dlbatch.datasets import DLDataWarning, read_dl_dataset
    from dlbatch.datasets.skipping import describe_skipped
    with warnings.catch_warnings():  # printed below as a command's warning, not as Python's
        warnings.simplefilter("ignore", DLDataWarning)
        dataset = read_dl_dataset(path, skip_bad_images=skip_bad_images)
    skipped = dataset.skipped_samples
    if skipped and report:
        typer.echo(f"warning: skipped {len(skipped)} of {len(dataset) + len(skipped)} samples of {path} whose files "
                   f"cannot be read:\n{describe_skipped(reason for _, reason in skipped)}", err=True)
    return dataset


def check_dataset_fits(model, dataset, path: str) -> None:
    """Refuse a dataset the model cannot be trained or evaluated on, before any work starts.

    Args:
        model: the DLModel.
        dataset: a DLDataset.
        path: the dataset as the user typed it (for the message).

    Raises:
        DLParamError: another model type, or class ids the model does not know.
    """
    model_type = model.get_param("type")
    if dataset.model_type != model_type:
        raise DLParamError(f"{path} is a {dataset.model_type} dataset but the model is {model_type}; "
                           f"create a {dataset.model_type} model (dlbatch model create {dataset.model_type} "
                           f"-o m.onnx --dataset {path})")
    unknown = sorted(set(dataset.class_ids) - set(model.get_param("class_ids")))
    if unknown:
        raise DLParamError(f"{path} has class ids {unknown} that the model does not know (model: "
                           f"{model.get_param('class_ids')}); create the model with --dataset {path} or set "
                           "class_ids")


def preprocessed_chunks(model, dataset: Sequence, chunk: int = CHUNK) -> Iterator[list[dict]]:
    """The dataset as preprocessed samples, read lazily so memory holds one chunk at a time.

    Args:
        model: the DLModel whose preprocessing parameters apply.
        dataset: a sequence of raw samples (e.g. a DLDataset).
        chunk: samples per list.

    Returns:
        An iterator of lists of preprocessed samples.

    Raises:
        DLSampleError: a sample that cannot be read or preprocessed (when its chunk is reached).
    """
    import dlbatch
    for start in range(0, len(dataset), chunk):
        raw = [dataset[i] for i in range(start, min(start + chunk, len(dataset)))]
        yield dlbatch.preprocess_dl_samples(raw, model)


def evaluate_dataset(model, dataset: Sequence) -> dict:
    """evaluate_dl_model over a dataset on disk, chunk by chunk.

    Args:
        model: the DLModel.
        dataset: a sequence of raw samples (e.g. a DLDataset).

    Returns:
        The evaluation result of dlbatch.evaluate_dl_model.

    Raises:
        DLSampleError: a sample that cannot be read or preprocessed.
    """
    from dlbatch.core.infer import evaluate_batches
    return evaluate_batches(model, preprocessed_chunks(model, dataset, max(CHUNK, model.get_param("batch_size"))))
