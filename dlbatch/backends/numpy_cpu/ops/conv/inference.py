"""Conv (+ReLU (+max pooling)) without a tape, for the fused inference kernels of ..fused."""
from __future__ import annotations

import numpy as np

from .....core.backend import OpContext
from .._util import cm, relu_
from ..pooling import MaxPool, max_only, pool_geometry
from .convolution import Conv
from .gemm import conv_forward, forward_tasks, run_tasks
from .geometry import conv_geom


def conv_relu_forward(x, wb, w_shape, attrs, relu: bool, pool_attrs=None) -> np.ndarray:
    """Conv with the weight matrix and bias wb = [W | b] (O, C*kh*kw + 1) and the weight's shape,
    then ReLU, then max pooling with `pool_attrs`, without a tape: the inference path of the
    fused Conv+BatchNormalization(+Relu(+MaxPool)) kernels. Returns the logical NCHW result
    (channel-major memory)."""
    groups = int(attrs.get("group", 1))
    nograd = OpContext(training=False, needs_input_grad=(False,))
    w, b = wb[:, :-1].reshape(w_shape), wb[:, -1]
    if groups == 1 and x.ndim == 4 and w.shape[1] == x.shape[1]:
        g = conv_geom("Conv", attrs, x.shape, w.shape)
        if pool_attrs is not None:
            pgeom = pool_geometry(pool_attrs, (x.shape[0], w.shape[0]) + tuple(g.out))
            fused = forward_tasks(x, w, b, g, relu, (pgeom, max_only), wb)
            if fused is not None:
                run_tasks(fused[1])
                return cm(fused[0])
        y = cm(conv_forward(x, w, b, g, relu, wb))
    else:
        y = Conv().forward(OpContext(training=False, needs_input_grad=()),
                           [x, np.ascontiguousarray(w), b], attrs)[0][0]
        if relu:
            relu_(y, y)
    if pool_attrs is not None:
        y = MaxPool().forward(nograd, [y], pool_attrs)[0][0]
    return y
