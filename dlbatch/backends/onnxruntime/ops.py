"""The ops the onnxruntime backend accepts: every operator of the ai.onnx domain that the
installed onnx package defines. onnxruntime runs the whole graph itself, so each entry is only
a marker that lets `read_dl_model(..., backend="onnxruntime")` and the op checks pass; an op
onnxruntime turns out not to implement is refused when the session is built, naming the node."""
from __future__ import annotations

import onnx

BACKEND = "onnxruntime"


class SessionOp:
    """Marker kernel: the op runs inside the onnxruntime session, never on its own."""

    __slots__ = ("op_type",)

    def __init__(self, op_type: str) -> None:
        self.op_type = op_type

    def __repr__(self) -> str:
        return f"SessionOp({self.op_type!r})"


def op_types() -> list[str]:
    """Every ai.onnx operator name onnx knows, deprecated ones included (a file of an older
    opset may use them and onnxruntime still runs them), sorted."""
    return sorted({s.name for s in onnx.defs.get_all_schemas() if s.domain in ("", "ai.onnx")})


def session_ops() -> list[SessionOp]:
    return [SessionOp(op) for op in op_types()]
