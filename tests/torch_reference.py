"""An independent float64 PyTorch reference of the built-in networks, for tests only.

It interprets the handful of ONNX ops the built-in backbones use with torch.nn.functional and
lets torch autograd compute gradients, so numpy results are checked against torch, not against
themselves.
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F


def run_graph(graph, values: dict, image: np.ndarray, *, training: bool, bn_momentum=0.9):
    """Returns (logits tensor, params dict of leaf tensors with requires_grad, new stats)."""
    params = {n: torch.tensor(np.asarray(values[n], dtype=np.float64), requires_grad=True)
              for n in graph.trainable}
    env = {n: torch.tensor(np.asarray(values[n], dtype=np.float64)) for n in graph.statistics}
    env.update(params)
    env[graph.inputs[0].name] = torch.tensor(np.asarray(image, dtype=np.float64))
    new_stats = {}
    for node in graph.nodes:
        x = [env[i] for i in node.inputs]
        a = node.attrs
        op = node.op_type
        if op == "Conv":
            pads = a.get("pads", [0, 0, 0, 0])
            y = F.conv2d(x[0], x[1], x[2] if len(x) > 2 else None, stride=a.get("strides", [1, 1]),
                         padding=(pads[0], pads[1]), groups=a.get("group", 1))
        elif op == "BatchNormalization":
            eps = a.get("epsilon", 1e-5)
            if training:
                mean = x[0].mean(dim=(0, 2, 3))
                var = x[0].var(dim=(0, 2, 3), unbiased=False)
                n = x[0].numel() / x[0].shape[1]
                new_stats[node.inputs[3]] = (bn_momentum * x[3] + (1 - bn_momentum) * mean).detach().numpy()
                new_stats[node.inputs[4]] = (bn_momentum * x[4] + (1 - bn_momentum) * var * n / (n - 1)).detach().numpy()
            else:
                mean, var = x[3], x[4]
            y = (x[0] - mean[None, :, None, None]) / torch.sqrt(var[None, :, None, None] + eps)
            y = y * x[1][None, :, None, None] + x[2][None, :, None, None]
        elif op == "Relu":
            y = F.relu(x[0])
        elif op == "MaxPool":
            pads = a.get("pads", [0, 0, 0, 0])
            y = F.max_pool2d(x[0], a["kernel_shape"], a.get("strides", a["kernel_shape"]), padding=pads[0])
        elif op == "Add":
            y = x[0] + x[1]
        elif op == "GlobalAveragePool":
            y = x[0].mean(dim=(2, 3), keepdim=True)
        elif op == "Flatten":
            y = x[0].reshape(x[0].shape[0], -1)
        elif op == "Gemm":
            w = x[1].T if a.get("transB", 0) else x[1]
            y = x[0] @ w + x[2]
        else:
            raise NotImplementedError(op)
        env[node.outputs[0]] = y
    return env[graph.outputs[0].name], params, new_stats


def loss_and_grads(model, samples, *, class_weights=None):
    """Weighted cross-entropy (SPEC section 4) and d/dparams in float64 for one micro-batch."""
    hp = model.hyperparameters
    ids = {c: i for i, c in enumerate(hp["class_ids"])}
    image = np.stack([np.asarray(s["image"], dtype=np.float64).reshape(
        hp["image_height"], hp["image_width"], -1).transpose(2, 0, 1) for s in samples])
    y = torch.tensor([ids[s["image_label_id"]] for s in samples])
    logits, params, stats = run_graph(model.graph, {**model.state_dict()}, image, training=True,
                                      bn_momentum=hp["batchnorm_momentum"])
    w = torch.tensor(class_weights, dtype=torch.float64) if class_weights is not None else None
    loss = F.cross_entropy(logits, y, weight=w)  # weighted mean = sum a_n nll_n / sum a_n
    loss.backward()
    return float(loss), {n: p.grad.numpy() for n, p in params.items()}, stats
