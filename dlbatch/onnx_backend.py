"""An `onnx.backend.base.Backend` over a dlbatch compute backend, so the ONNX backend
conformance suite (`onnx.backend.test.BackendTest`) and other ONNX tooling can run graphs on
dlbatch's numpy or torch kernels.

    from dlbatch.onnx_backend import backend_for
    rep = backend_for("numpy").prepare(onnx_model)
    outputs = rep.run([x])

Graphs run forward in inference mode (batch normalization uses its running statistics). Each
distinct set of input shapes is compiled once: constant subgraphs (including `Shape` of inputs)
are folded for those shapes, everything else runs on the backend's kernels. An op the backend
has no kernel for is a `DLModelFileError` naming the node, the op and the supported ops.
"""
from __future__ import annotations

from typing import Any, Sequence

import numpy as np
import onnx
from onnx import helper
from onnx.backend.base import Backend, BackendRep, namedtupledict

from .core.errors import DLModelFileError
from .core.onnx_import import MAX_OPSET, MIN_OPSET, check_ops, import_graph, real_inputs
from .core.plugins import manager


def _device_name(backend_name: str, device: str) -> str:
    d = str(device).upper()
    if d.startswith("CPU"):
        return "cpu"
    if d.startswith("CUDA"):
        _, _, index = d.partition(":")
        return f"cuda:{index or 0}"
    return str(device).lower()


def within_supported_opset(model: onnx.ModelProto) -> onnx.ModelProto:
    """`model` converted with onnx.version_converter into the opsets dlbatch reads (7 to 21)
    when it imports an older or newer ai.onnx opset: down to 21 (the operators dlbatch runs
    changed after 21 only by gaining data types), up to 7 (the conformance suite's converted
    PyTorch models are opset 6). A model that cannot be converted keeps its opset and is
    refused with the opset named. `read_dl_model` does not convert: it refuses such files."""
    version = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), None)
    if version is None or MIN_OPSET <= version <= MAX_OPSET:
        return model
    try:
        from onnx import version_converter
        return version_converter.convert_version(model, MAX_OPSET if version > MAX_OPSET else MIN_OPSET)
    except Exception:
        return model


class DLBatchBackendRep(BackendRep):
    """A prepared model: runs forward (inference mode) for given inputs."""

    def __init__(self, model: onnx.ModelProto, backend_name: str, device: str) -> None:
        self._model = onnx.ModelProto()
        self._model.CopyFrom(within_supported_opset(model))
        self._backend_name = backend_name
        self._device = device
        self._backend = manager.backend(backend_name)
        self._backend.check_device(device)
        self._input_names = [vi.name for vi in real_inputs(model.graph)]
        self._output_names = [o.name for o in model.graph.output]
        self._compiled: dict[tuple, tuple] = {}

    def _feeds(self, inputs: Any) -> dict[str, np.ndarray]:
        if isinstance(inputs, dict):
            return {k: np.asarray(v) for k, v in inputs.items()}
        if isinstance(inputs, (list, tuple)):
            if len(inputs) > len(self._input_names):
                raise ValueError(f"got {len(inputs)} inputs, the model has {len(self._input_names)}: "
                                 f"{self._input_names}")
            return {n: np.asarray(v) for n, v in zip(self._input_names, inputs)}
        return {self._input_names[0]: np.asarray(inputs)}

    def _compile(self, feeds: dict[str, np.ndarray]):
        dims = {n: tuple(a.shape) for n, a in feeds.items()}
        imported = import_graph(self._model, dims, "onnx model", roles=False)
        graph = imported.graph
        kernels = manager.kernels(self._backend_name)
        check_ops(graph, kernels, self._backend_name, "onnx model")
        floats = [a.dtype for a in feeds.values() if a.dtype.kind == "f"]
        precision = "float64" if any(d == np.float64 for d in floats) else "float32"
        program = self._backend.compile(graph, kernels, device=self._device, dtype=precision)
        values = {n: self._backend.asarray(v, device=self._device) for n, v in imported.values.items()}
        return graph, program, values

    def run(self, inputs: Any, **kwargs: Any):
        feeds = self._feeds(inputs)
        key = tuple((n, a.shape, a.dtype.str) for n, a in sorted(feeds.items()))
        if key not in self._compiled:
            self._compiled[key] = self._compile(feeds)
        graph, program, values = self._compiled[key]
        used = {v.name for v in graph.inputs}
        backend_inputs = {n: self._backend.asarray(a, device=self._device) for n, a in feeds.items() if n in used}
        result = program.forward(values, backend_inputs, training=False, wanted=tuple(self._output_names))
        outs = [self._backend.to_numpy(result.outputs[n]) for n in self._output_names]
        return namedtupledict("Outputs", self._output_names)(*outs)


class DLBatchBackend(Backend):
    """The ONNX backend API over the dlbatch backend named by `dlbatch_backend`."""

    dlbatch_backend = "numpy"

    @classmethod
    def supports_device(cls, device: str) -> bool:
        try:
            backend = manager.backend(cls.dlbatch_backend)
            backend.check_device(_device_name(cls.dlbatch_backend, device))
        except Exception:
            return False
        return True

    @classmethod
    def prepare(cls, model: onnx.ModelProto, device: str = "CPU", **kwargs: Any) -> DLBatchBackendRep:
        super().prepare(model, device, **kwargs)
        return DLBatchBackendRep(model, cls.dlbatch_backend, _device_name(cls.dlbatch_backend, device))

    @classmethod
    def run_model(cls, model: onnx.ModelProto, inputs: Any, device: str = "CPU", **kwargs: Any):
        return cls.prepare(model, device, **kwargs).run(inputs)

    @classmethod
    def run_node(cls, node: onnx.NodeProto, inputs: Any, device: str = "CPU",
                 outputs_info: Sequence[tuple] | None = None, **kwargs: Any):
        """Run one node: `inputs` are arrays for the node's non-empty inputs, in order."""
        names = [i for i in node.input if i]
        arrays = [np.asarray(a) for a in (inputs.values() if isinstance(inputs, dict) else inputs)]
        if len(arrays) != len(names):
            raise ValueError(f"node {node.op_type} has {len(names)} inputs, got {len(arrays)} arrays")
        graph_inputs = [helper.make_tensor_value_info(n, helper.np_dtype_to_tensor_dtype(a.dtype), list(a.shape))
                        for n, a in zip(names, arrays)]
        outputs = [o for o in node.output if o]
        if outputs_info:
            graph_outputs = [helper.make_tensor_value_info(o, helper.np_dtype_to_tensor_dtype(np.dtype(t)), list(s))
                             for o, (t, s) in zip(outputs, outputs_info)]
        else:
            graph_outputs = [helper.make_empty_tensor_value_info(o) for o in outputs]
        opset = int(kwargs.pop("opset_version", min(onnx.defs.onnx_opset_version(), MAX_OPSET)))
        model = helper.make_model(helper.make_graph([node], f"run_node_{node.op_type}", graph_inputs, graph_outputs),
                                  opset_imports=[helper.make_opsetid("", opset)])
        rep = DLBatchBackendRep(model, cls.dlbatch_backend, _device_name(cls.dlbatch_backend, device))
        return rep.run(dict(zip(names, arrays)))


_CLASSES: dict[str, type[DLBatchBackend]] = {"numpy": DLBatchBackend}


def backend_for(name: str) -> type[DLBatchBackend]:
    """The ONNX Backend class for the dlbatch backend `name` ("numpy", "torch", a plugin's)."""
    manager.backend(name)  # unknown name: error listing the available backends
    if name not in _CLASSES:
        title = "".join(p.capitalize() for p in name.replace("-", "_").split("_"))
        _CLASSES[name] = type(f"DLBatch{title}Backend", (DLBatchBackend,), {"dlbatch_backend": name})
    return _CLASSES[name]


# module-level API, as onnxruntime.backend offers it (numpy backend)
prepare = DLBatchBackend.prepare
run_model = DLBatchBackend.run_model
run_node = DLBatchBackend.run_node
supports_device = DLBatchBackend.supports_device

__all__ = ["DLBatchBackend", "DLBatchBackendRep", "backend_for", "prepare", "run_model", "run_node",
           "supports_device", "DLModelFileError"]
