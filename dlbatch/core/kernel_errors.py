"""What a kernel raises at apply or train time, as a dlbatch error naming the node.

A foreign network can make a kernel fail on input the import could not foresee (a shape that
only fits the batch size it was exported with, a data type a kernel does not take). The
program turns the raw numpy/torch exception into a DLError that says which node and op failed
and on which backend; train_dl_model_batch commits nothing before the step is done, so the model
is left as it was.
"""
from __future__ import annotations

from .errors import DLBackendError, DLError


def node_error(exc: BaseException, node: str | None, op: str | None, backend: str, phase: str) -> DLError:
    """The error to raise for `exc` raised by `node` (op `op`) during `phase` ("forward" or
    "backward") on `backend`, chained to it. A DLError keeps its class and gains the node."""
    err = _translated(exc, node, op, backend, phase)
    if err is not exc:
        err.__cause__ = exc
    return err


def _translated(exc, node, op, backend, phase):
    where = f"node {node!r} ({op})" if node else "the backward pass"
    if isinstance(exc, DLError):
        text = str(exc)
        if node and repr(node) in text:
            return exc
        try:
            return type(exc)(f"{where} on the {backend} backend: {text}")
        except Exception:  # an error class with another constructor: keep it as it is
            return exc
    detail = f"{type(exc).__name__}: {exc}".strip()
    return DLBackendError(
        f"{where} failed in the {phase} pass on the {backend} backend: {detail}. The network's shapes or "
        "data types do not fit this input (an exported network may fix the batch size or image size); "
        "the model was not changed")
