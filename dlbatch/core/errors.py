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
    """An unknown model parameter, a wrong type or an out-of-range value."""


class DLSampleError(DLError, ValueError):
    """A sample (or the batch) does not match what the model needs."""


class DLPluginError(DLError, LookupError):
    """An unknown backend, loss, model type or op, or a plugin that failed to load."""


class DLBackendError(DLError, RuntimeError):
    """A backend cannot run on this machine (missing package, missing device)."""


class DLNumericError(DLError, FloatingPointError):
    """A loss or gradient became NaN or infinite; the step was not applied."""


class DLModelFileError(DLError, OSError):
    """A model file is unreadable, corrupt, unsafe or uses something unsupported."""


def did_you_mean(name: str, choices) -> str:
    """A short 'available: ...' tail for error messages listing the allowed names."""
    names = sorted(str(c) for c in choices)
    return f"available: {', '.join(names) if names else '(none registered)'}"
