"""A graph run by onnxruntime: the inference graph with the model's current values becomes
one InferenceSession, which is reused while the values stay the same.

Cache key: the identity of every initializer array passed to `forward`. Model values are
never changed in place (solvers, commit, load_state_dict and replace_params all hand over new
arrays; see dlbatch.core.model), so the same array objects mean the same weights. The program
holds only weak references to them: an old array that was freed can never be mistaken for a
new one with the same id. `session_builds` counts the sessions built, for tests and benches.

The ONNX model is written by dlbatch.core.onnx_export (the same graph_to_proto as the model
file), so the session runs exactly the graph the other backends run in inference mode:
batch normalization with its running statistics, dropout as identity.
"""
from __future__ import annotations

import weakref
from typing import Any, Callable, Mapping

import numpy as np
from onnx import helper

from ...core.backend import ForwardResult, Program
from ...core.errors import DLBackendError, DLPluginError
from ...core.graph import Graph
from ...core.onnx_export import graph_to_proto, ir_version_for, opset_imports
from ._lazy import require_onnxruntime

INFERENCE_ONLY = ("the onnxruntime backend runs inference only (apply_dl_model, evaluate_dl_model); switch to "
                  "a backend that trains (set_dl_model_param(model, 'backend', 'numpy') or 'torch') to train")


def _ref(value):
    """A weak reference where the value takes one, else the value itself (kept alive)."""
    try:
        return weakref.ref(value)
    except TypeError:
        return lambda: value


def inference_model_bytes(graph: Graph, values: Mapping[str, Any], dtype: str,
                          extra_outputs: tuple[str, ...] = (),
                          input_shapes: Mapping[str, tuple] | None = None) -> bytes:
    """The serialized ONNX model of `graph` with `values` as initializers; `extra_outputs`
    (intermediate values a caller wants) become graph outputs of undeclared type, which
    onnxruntime infers; `input_shapes` fixes the inputs' free dimensions (None keeps one free)."""
    proto_graph = graph_to_proto(graph, {n: np.asarray(values[n]) for n in graph.initializer_names()},
                                 precision=dtype, name="dlbatch_onnxruntime", input_shapes=input_shapes)
    proto_graph.output.extend(helper.make_empty_tensor_value_info(n) for n in extra_outputs)
    proto = helper.make_model(proto_graph, opset_imports=opset_imports(graph), producer_name="dlbatch")
    proto.ir_version = ir_version_for(graph)
    return proto.SerializeToString()


class OnnxRuntimeProgram(Program):
    def __init__(self, graph: Graph, *, dtype: str, session_options: Callable[[], Any]) -> None:
        self._ort = require_onnxruntime()
        self.graph = graph
        self.dtype = dtype
        self.session_builds = 0
        self.session = None  # the current onnxruntime.InferenceSession (None before the first run)
        self._session_options = session_options
        self._initializers = tuple(graph.initializer_names())
        self._init_set = frozenset(self._initializers)
        self._inputs = tuple(v.name for v in graph.inputs)
        self._outputs = tuple(v.name for v in graph.outputs)
        self._computed = frozenset(o for n in graph.nodes for o in n.outputs if o)
        self._sources: tuple = ()
        self._session_outputs: tuple[str, ...] = ()
        self._session_dims: tuple = ()

    # -- the session -----------------------------------------------------------------------------
    def _same_values(self, values: Mapping[str, Any]) -> bool:
        return len(self._sources) == len(self._initializers) and all(
            ref() is values[n] for ref, n in zip(self._sources, self._initializers))

    def session_for(self, values: Mapping[str, Any], wanted: tuple[str, ...] = (), dims: tuple = ()):
        """The session for these values that returns `wanted` for inputs of these shapes (all
        but the batch dimension, one entry per graph input): the current one when the values
        are the same arrays, it has those outputs and was built for those shapes, else a new
        one. Fixed image sides let onnxruntime plan its kernels and memory once (a graph with
        free sides ran 1.1-1.4x slower than the same network exported with fixed ones)."""
        computed = [w for w in wanted if w in self._computed]
        if (self.session is not None and self._same_values(values) and set(computed) <= set(self._session_outputs)
                and dims == self._session_dims):
            return self.session
        missing = [n for n in self._initializers if n not in values]
        if missing:
            raise DLPluginError(f"the onnxruntime program needs a value for every initializer; missing {missing[:5]}")
        # outputs asked for earlier stay, so alternating callers do not rebuild every time
        outputs = tuple(dict.fromkeys(self._outputs + self._session_outputs + tuple(computed)))
        extra = tuple(o for o in outputs if o not in self._outputs)
        shapes = {n: (None, *d) for n, d in zip(self._inputs, dims) if d is not None}
        data = inference_model_bytes(self.graph, values, self.dtype, extra, shapes)
        try:
            session = self._ort.InferenceSession(data, sess_options=self._session_options(),
                                                 providers=["CPUExecutionProvider"])
        except Exception as exc:
            raise DLBackendError(f"onnxruntime cannot build a session for this model: {' '.join(str(exc).split())}. "
                                 "Use backend 'numpy' or 'torch' for it") from exc
        self.session, self._session_outputs, self._session_dims = session, outputs, dims
        self._sources = tuple(_ref(values[n]) for n in self._initializers)
        self.session_builds += 1
        return session

    # -- running ----------------------------------------------------------------------------------
    def forward(self, values, inputs, *, training, bn_momentum=0.9, wanted=None) -> ForwardResult:
        if training:
            raise DLBackendError(INFERENCE_ONLY)
        wanted = tuple(wanted) if wanted else self._outputs
        unknown = [w for w in wanted if w not in self._computed and w not in self._init_set and w not in inputs]
        if unknown:
            raise DLPluginError(f"the graph has no value named {unknown}; outputs are {list(self._outputs)}")
        feeds = {n: np.ascontiguousarray(inputs[n]) for n in self._inputs if n in inputs}
        dims = tuple(tuple(feeds[n].shape[1:]) if n in feeds and feeds[n].ndim else None for n in self._inputs)
        session = self.session_for(values, wanted, dims)
        run = [w for w in wanted if w in self._computed]
        try:
            results = session.run(run, feeds) if run else []
        except Exception as exc:
            raise DLBackendError(f"onnxruntime failed to run the model: {' '.join(str(exc).split())}") from exc
        got = dict(zip(run, results))
        outputs = {w: got[w] if w in got else values[w] if w in self._init_set else inputs[w] for w in wanted}
        return ForwardResult(outputs=outputs, statistics={}, tape=None)

    def backward(self, tape, output_grads) -> dict:
        raise DLBackendError(INFERENCE_ONLY)
