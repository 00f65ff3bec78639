"""A compiled node's plan memo (TorchOpContext.plan): a Conv run on a sequence of shapes through
one plan gives, for each shape, exactly what the kernel gives without a memo and what torch
gives with the padding written out (float64), including asymmetric SAME padding, which depends
on the input size."""
from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")
import torch.nn.functional as F  # noqa: E402

from dlbatch.backends.torch.kernel import TorchOpContext  # noqa: E402
from dlbatch.backends.torch.ops.conv import Conv  # noqa: E402


def _ctx(plan):
    return TorchOpContext(training=True, bn_momentum=0.9, opset=13, num_outputs=1, device="cpu", plan=plan)


def _same_upper_reference(x, w, stride):
    """SAME_UPPER written out: total pad = max(0, (ceil(n/s) - 1) s + k - n), the extra one at the end."""
    pads = []
    for n, k in zip(reversed(x.shape[2:]), reversed(w.shape[2:])):
        total = max(0, (-(-n // stride) - 1) * stride + k - n)
        pads += [total // 2, total - total // 2]
    return F.conv2d(F.pad(x, pads), w, None, stride)


@pytest.mark.parametrize("attrs", [{"auto_pad": "SAME_UPPER", "strides": [2, 2]},
                                   {"pads": [1, 0, 2, 1], "strides": [1, 2]},
                                   {"pads": [1, 1, 1, 1], "group": 2}])
def test_plan_memo_matches_fresh_calls_across_shapes(attrs):
    rng = np.random.default_rng(0)
    w = torch.from_numpy(rng.standard_normal((4, 2 if attrs.get("group") == 2 else 4, 3, 3)))
    plan: dict = {}
    for shape in [(2, 4, 7, 7), (1, 4, 8, 6), (2, 4, 7, 7), (3, 4, 5, 9)]:
        x = torch.from_numpy(rng.standard_normal(shape))
        got = Conv().forward(_ctx(plan), [x, w], dict(attrs))[0]
        fresh = Conv().forward(_ctx(None), [x, w], dict(attrs))[0]
        assert torch.equal(got, fresh)
        if attrs.get("auto_pad") == "SAME_UPPER":
            torch.testing.assert_close(got, _same_upper_reference(x, w, 2), rtol=1e-12, atol=1e-12)
    assert len(plan) == 3  # one entry per distinct (input, weight) shape
