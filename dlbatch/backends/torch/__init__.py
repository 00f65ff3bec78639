"""The torch compute backend (CPU and CUDA): each ONNX op maps to torch functions and autograd
does backward.

Importing this package, or loading its plugin, never imports torch: the backend imports torch
when it is first used (compile, asarray, ...) and says `pip install 'dlbatch[torch]'` when torch
is missing. Op kernels are registered as lazy handles whose torch code loads at compile time.
"""
