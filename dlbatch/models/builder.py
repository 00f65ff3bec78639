"""A small graph builder: adds ONNX nodes and their initial weights with readable names.

Initialisation follows torchvision: convolutions He-normal (fan_out), batch norm scale 1 and
shift 0, fully connected layers uniform(+-1/sqrt(fan_in)) as torch.nn.Linear.
"""
from __future__ import annotations

import math

import numpy as np

from ..core.graph import Graph, Node, ValueInfo


class GraphBuilder:
    def __init__(self, rng: np.random.Generator):
        self.rng = rng
        self.nodes: list[Node] = []
        self.values: dict[str, np.ndarray] = {}
        self.trainable: list[str] = []
        self.statistics: list[str] = []
        self.constants: list[str] = []

    def _param(self, name: str, value: np.ndarray, role: str = "trainable") -> str:
        self.values[name] = np.asarray(value, dtype=np.float32) if value.dtype.kind == "f" else value
        {"trainable": self.trainable, "statistics": self.statistics, "constants": self.constants}[role].append(name)
        return name

    def node(self, op_type: str, inputs: list[str], name: str, outputs: list[str] | None = None, **attrs) -> str:
        outputs = outputs or [name]
        self.nodes.append(Node(op_type, list(inputs), outputs, attrs, name))
        return outputs[0]

    def conv(self, x: str, cin: int, cout: int, k: int, name: str, stride: int = 1, pad: int | None = None,
             bias: bool = False, groups: int = 1, output: str | None = None, std: float | None = None) -> str:
        """A convolution, He-normal initialised (fan_out) unless `std` is given."""
        pad = k // 2 if pad is None else pad
        std = math.sqrt(2.0 / (cout * k * k / groups)) if std is None else std
        w = self._param(f"{name}.weight", self.rng.normal(0.0, std, (cout, cin // groups, k, k)))
        inputs = [x, w]
        if bias:
            inputs.append(self._param(f"{name}.bias", np.zeros(cout)))
        return self.node("Conv", inputs, name, outputs=[output or name], kernel_shape=[k, k],
                         strides=[stride, stride], pads=[pad] * 4, group=groups)

    def batchnorm(self, x: str, c: int, name: str) -> str:
        inputs = [x,
                  self._param(f"{name}.scale", np.ones(c)),
                  self._param(f"{name}.bias", np.zeros(c)),
                  self._param(f"{name}.running_mean", np.zeros(c, np.float32), "statistics"),
                  self._param(f"{name}.running_var", np.ones(c, np.float32), "statistics")]
        return self.node("BatchNormalization", inputs, name, epsilon=1e-5, momentum=0.9)

    def relu(self, x: str, name: str) -> str:
        return self.node("Relu", [x], name)

    def conv_bn_relu(self, x: str, cin: int, cout: int, k: int, name: str, stride: int = 1) -> str:
        y = self.conv(x, cin, cout, k, f"{name}.conv", stride=stride)
        y = self.batchnorm(y, cout, f"{name}.bn")
        return self.relu(y, f"{name}.relu")

    def maxpool(self, x: str, k: int, stride: int, name: str, pad: int = 0) -> str:
        return self.node("MaxPool", [x], name, kernel_shape=[k, k], strides=[stride, stride], pads=[pad] * 4)

    def add(self, a: str, b: str, name: str) -> str:
        return self.node("Add", [a, b], name)

    def global_avgpool_flatten(self, x: str, name: str) -> str:
        y = self.node("GlobalAveragePool", [x], f"{name}.gap")
        return self.node("Flatten", [y], f"{name}.flatten", axis=1)

    def dense_init(self, fin: int, fout: int) -> tuple[np.ndarray, np.ndarray]:
        bound = 1.0 / math.sqrt(fin)
        return (self.rng.uniform(-bound, bound, (fout, fin)).astype(np.float32),
                self.rng.uniform(-bound, bound, (fout,)).astype(np.float32))

    def dense(self, x: str, fin: int, fout: int, name: str, output: str | None = None) -> str:
        weight, bias = self.dense_init(fin, fout)
        w = self._param(f"{name}.weight", weight)
        b = self._param(f"{name}.bias", bias)
        return self.node("Gemm", [x, w, b], name, outputs=[output or name], transB=1)

    def graph(self, inputs: list[ValueInfo], outputs: list[ValueInfo]) -> Graph:
        return Graph(nodes=self.nodes, inputs=inputs, outputs=outputs, trainable=self.trainable,
                     statistics=self.statistics, constants=self.constants)

    def adopt(self, graph: Graph, values) -> None:
        """Continue an existing graph (e.g. a classifier cut before its head): its nodes,
        values (kept as they are, trained weights included) and initializer roles."""
        self.nodes.extend(graph.nodes)
        self.values.update(values)
        self.trainable.extend(graph.trainable)
        self.statistics.extend(graph.statistics)
        self.constants.extend(graph.constants)

    def resize(self, x: str, factor: int, name: str, output: str | None = None) -> str:
        """Bilinear upsampling by an integer factor (ONNX Resize, half-pixel centres: the
        convention of torch's interpolate(align_corners=False) and of cv2)."""
        scales = self._param(f"{name}.scales", np.array([1, 1, factor, factor], np.float32), "constants")
        return self.node("Resize", [x, "", scales], name, outputs=[output or name], mode="linear",
                         coordinate_transformation_mode="half_pixel")

    def upsample_nearest(self, x: str, factor: int, name: str) -> str:
        """Nearest-neighbour upsampling by an integer factor (each pixel repeated; torch's
        interpolate(mode='nearest')), as feature pyramids use."""
        scales = self._param(f"{name}.scales", np.array([1, 1, factor, factor], np.float32), "constants")
        return self.node("Resize", [x, "", scales], name, mode="nearest",
                         coordinate_transformation_mode="asymmetric", nearest_mode="floor")

    def flatten_locations(self, x: str, per_location: int, name: str) -> str:
        """N x (A*P) x H x W -> N x (H*W*A) x P: one row per anchor, ordered y, x, anchor."""
        y = self.node("Transpose", [x], f"{name}.nhwc", perm=[0, 2, 3, 1])
        shape = self._param(f"{name}.shape", np.array([0, -1, per_location], np.int64), "constants")
        return self.node("Reshape", [y, shape], name)

    def concat(self, xs: list[str], axis: int, name: str, output: str | None = None) -> str:
        return self.node("Concat", list(xs), name, outputs=[output or name], axis=axis)

    def conv_params(self, cin: int, cout: int, k: int, name: str, *, std: float, bias: float = 0.0
                    ) -> tuple[str, str]:
        """(weight, bias) of a k x k convolution, normal(0, std) and a constant bias, to be used
        by several Conv nodes (weights shared across pyramid levels)."""
        w = self._param(f"{name}.weight", self.rng.normal(0.0, std, (cout, cin, k, k)))
        return w, self._param(f"{name}.bias", np.full(cout, bias))

    def conv_with(self, x: str, params: tuple[str, str], k: int, name: str, stride: int = 1) -> str:
        """A Conv node reading existing (weight, bias) initializers, 'same' padding."""
        return self.node("Conv", [x, *params], name, kernel_shape=[k, k], strides=[stride, stride],
                         pads=[k // 2] * 4)
