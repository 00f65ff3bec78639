"""Networks designed after 2020, written in plain torch.nn: a ConvNeXt-style block (depthwise
7x7 convolution, LayerNorm, exact GELU, layer scale), a tiny vision transformer (class token
`cls.expand(x.shape[0], -1, -1)`, multi-head attention, LayerNorm, tanh GELU, `x[:, 0]`) and a
GroupNorm network, each exported four ways (tests/core/pytorch_export_nets.py) and checked
like the classic CNNs: both backends, onnxruntime, one training step equal on both backends
and to the module's own train-mode loss, every trainable tensor moving."""
from __future__ import annotations

import pytest

pytest.importorskip("torch")
pytest.importorskip("onnxruntime")

from .pytorch_export_nets import STYLES, check_read_and_apply, check_train_step  # noqa: E402

ARCHS = ["convnext", "vit", "groupnorm"]
CASES = [(a, s) for a in ARCHS for s in STYLES]
IDS = [f"{a}-{s}" for a, s in CASES]


@pytest.mark.parametrize("arch,style", CASES, ids=IDS)
def test_reads_on_both_backends_and_equals_onnxruntime(tmp_path, arch, style):
    check_read_and_apply(arch, style, tmp_path)


@pytest.mark.parametrize("arch,style", CASES, ids=IDS)
def test_one_training_step_at_batch_size_4(tmp_path, arch, style):
    check_train_step(arch, style, tmp_path)
