"""What a kernel raises at apply or train time, as a dlbatch error naming the node.

A foreign network can make a kernel fail on input the import could not foresee (a shape that
only fits the batch size it was exported with, a data type a kernel does not take). The
program turns the raw numpy/torch exception into a DLError that says which node and op failed
and on which backend; train_dl_model_batch commits nothing before the step is done, so the model
is left as it was. `missing_kernel_error` is the compile-time counterpart: the same refusal of
an op without a kernel on every backend.
"""
from __future__ import annotations

from typing import Any, Mapping

from .errors import DLBackendError, DLError, DLPluginError
from .graph import Graph


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


def missing_kernel_error(graph: Graph, kernels: Mapping[str, Any], backend: str) -> DLPluginError | None:
    """The error for the first node whose op has no kernel on `backend`, or None.

    A backend's `compile` calls this first, so that every backend refuses an unsupported
    graph with the same message: it names the node, the op, the supported ops and how a
    plugin adds the op.

    Args:
        graph: the graph to compile.
        kernels: op type -> kernel, the kernels registered for `backend`.
        backend: the backend's name, for the message.

    Returns:
        A DLPluginError to raise, or None when every op has a kernel.

    Examples:
        >>> from dlbatch.core.graph import Graph, Node, ValueInfo
        >>> graph = Graph([Node("Softplus", ["x"], ["y"], name="smooth")], [ValueInfo("x", (None, 2))],
        ...               [ValueInfo("y", (None, 2))], trainable=[])
        >>> print(missing_kernel_error(graph, {"Relu": object()}, "mine"))   # doctest: +ELLIPSIS
        node 'smooth': op 'Softplus' is not supported by the mine backend; supported ops: Relu. ...
    """
    for node in graph.nodes:
        if node.op_type not in kernels:
            return DLPluginError(
                f"node {node.name or node.outputs[0]!r}: op {node.op_type!r} is not supported by the "
                f"{backend} backend; supported ops: {', '.join(sorted(kernels))}. A plugin can add it "
                f"with the dlbatch_register_ops hook (register({backend!r}, {node.op_type!r}, kernel))")
    return None
