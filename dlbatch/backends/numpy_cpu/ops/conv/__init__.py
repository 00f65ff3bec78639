"""Conv and ConvTranspose (2-D spatial) as im2col + GEMM, computed channel-major.

Conv (groups == 1) works on chunks of the output positions (whole samples, or row ranges of
one sample for large images) whose column matrix (C*kh*kw, positions) is about COLS_BUDGET
bytes. Each chunk builds its columns straight from the unpadded channel-major input into a
per-thread scratch buffer (one slice copy per kernel tap with the padding written as zeros, or
for small 'same'-size maps one flat shift per tap of whole H*W planes) and runs one GEMM whose
output is the chunk's slice of the channel-major result. Chunks run on the kernel threads
(..parallel); BLAS itself is single-threaded meanwhile.

Backward: for stride 1, dx is the forward convolution of dy with the flipped, transposed
kernel (gathering columns of dy beats scatter-adding column gradients), and the same columns
of dy give dW as x @ cols.T (flipped), so x is not expanded again; otherwise dcols = W.T @ dy
is scattered back with col2im per chunk and dW is recomputed from the columns of x (kh*kw times
the input, too big to keep). dW is the sum of per-chunk partial products in chunk order, or,
for small maps with many channels, one GEMM over all positions split into row blocks. The
chunking depends on the shapes only, so results are bit-identical for any number of threads.

Strided backward scatters dx through phase planes (.phase_scatter on .phases' space-to-depth
grid) instead of col2im. Few output channels from many input channels: the forward is
GEMM-then-shift on the phase grid (.kn2row). Grouped convolutions with few groups run one such
GEMM plan per group (.grouped), many groups a batched GEMM over chunks of the batch; depthwise
(groups == C == O) per-tap multiply-adds over flat phase-plane rows (.depthwise); ConvTranspose
the adjoint (GEMM then col2im).
"""
from __future__ import annotations

from .convolution import Conv
from .inference import conv_relu_forward
from .transpose import ConvTranspose

__all__ = ["Conv", "ConvTranspose", "conv_relu_forward"]
