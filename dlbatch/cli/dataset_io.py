"""Datasets from disk as the commands need them: checked against the model (type, class ids)
and streamed as preprocessed chunks, so no command holds a whole dataset's images in memory."""
from __future__ import annotations

from typing import Iterator, Sequence

from dlbatch.core.errors import DLParamError

CHUNK = 32  # samples read and preprocessed at a time (then applied in micro-batches of batch_size)


def check_dataset_fits(model, dataset, path: str) -> None:
    """The dataset is of the model's type and uses only class ids the model knows."""
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
    """The dataset as lists of preprocessed samples, read lazily chunk by chunk."""
    import dlbatch
    for start in range(0, len(dataset), chunk):
        raw = [dataset[i] for i in range(start, min(start + chunk, len(dataset)))]
        yield dlbatch.preprocess_dl_samples(raw, model)


def evaluate_dataset(model, dataset: Sequence) -> dict:
    """evaluate_dl_model over a dataset on disk, chunk by chunk."""
    from dlbatch.core.infer import evaluate_batches
    return evaluate_batches(model, preprocessed_chunks(model, dataset, max(CHUNK, model.get_param("batch_size"))))
