"""One exception hierarchy. Every message says what was wrong and what to do about it."""


class DLError(Exception):
    """Base of every error dlbatch raises on purpose; the message says what was wrong and what
    to do. Catch the subclasses for one kind of problem.

    Examples:
        >>> import dlbatch
        >>> model = dlbatch.create_dl_model("classification", class_ids=[0, 1], image_dimensions=[8, 8, 1])
        >>> try:
        ...     model.set_param("batch_size", 0)
        ... except dlbatch.DLParamError as err:
        ...     print(err)
        parameter 'batch_size' got 0: must be > 0
    """


class DLParamError(DLError, ValueError):
    """An unknown model parameter, a wrong type or an out-of-range value; also a ValueError.

    Raised before anything changes: the model keeps its old value.

    Examples:
        >>> try:
        ...     model.set_param("colour", "red")
        ... except dlbatch.DLParamError as err:
        ...     print(str(err).split(";")[0], isinstance(err, ValueError))
        unknown parameter 'colour' for a classification model True
    """


class DLSampleError(DLError, ValueError):
    """A sample (or the batch) does not match what the model needs: a missing key, a wrong
    shape, an invalid label, non-finite values, the wrong number of samples; also a ValueError.

    Examples:
        >>> from dlbatch.data import classification_samples
        >>> model.set_param("batch_size", 2)
        >>> raw = classification_samples(3, height=8, width=8, channels=1, class_ids=[0, 1])
        >>> samples = dlbatch.preprocess_dl_samples(raw, model)
        >>> try:
        ...     model.train_batch(samples)
        ... except dlbatch.DLSampleError as err:
        ...     print(str(err).split(";")[0])
        got 3 samples, but batch_size * batch_size_multiplier = 2 * 1 = 2
    """


class DLPluginError(DLError, LookupError):
    """An unknown backend, loss, model type or op, or a plugin that failed to load; also a
    LookupError. The message lists what is registered.

    Examples:
        >>> try:
        ...     dlbatch.create_dl_model("classification", class_ids=[0, 1], backend="cobol")
        ... except dlbatch.DLPluginError as err:
        ...     print(str(err).split(";")[0])
        unknown backend 'cobol'
    """


class DLBackendError(DLError, RuntimeError):
    """A backend cannot run on this machine (missing package, missing device), or a kernel
    failed; also a RuntimeError.

    Examples:
        >>> try:
        ...     dlbatch.create_dl_model("classification", class_ids=[0, 1], backend="numpy", device="cuda:0")
        ... except dlbatch.DLBackendError as err:
        ...     print(str(err).split(";")[0])
        the numpy backend runs on 'cpu' only, not 'cuda:0'
    """


class DLNumericError(DLError, FloatingPointError):
    """A loss or gradient became NaN or infinite; the step was not applied (weights,
    batch-norm statistics and solver state are as before it); also a FloatingPointError.

    Examples:
        >>> import numpy as np
        >>> model.set_param("learning_rate", 1e38)  # far too large: the weights overflow
        >>> with np.errstate(all="ignore"):
        ...     try:
        ...         for _ in range(3):
        ...             losses = model.train_batch(samples[:2])
        ...     except dlbatch.DLNumericError as err:
        ...         print(str(err).split(";")[0])
        the loss became non-finite (loss_multinomial_logistic)
    """


class DLModelFileError(DLError, OSError):
    """A model file is missing, unreadable, corrupt, unsafe or uses something unsupported (the
    message lists every missing op), or cannot be written; also an OSError.

    Examples:
        >>> try:
        ...     dlbatch.read_dl_model("missing.onnx")
        ... except dlbatch.DLModelFileError as err:
        ...     print(err)
        model file missing.onnx does not exist
    """


def did_you_mean(name: str, choices) -> str:
    """A short 'available: ...' tail for error messages listing the allowed names."""
    names = sorted(str(c) for c in choices)
    return f"available: {', '.join(names) if names else '(none registered)'}"
