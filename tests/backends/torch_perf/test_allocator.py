"""The glibc malloc settings the torch backend applies for CPU training: once per process, only
on glibc, never when DLBATCH_TORCH_MALLOC_TUNING=0, and they reach mallopt with glibc's
parameter numbers and values it accepts."""
from __future__ import annotations

import ctypes
import platform

import pytest

from dlbatch.backends.torch import allocator


class _FakeLibc:
    def __init__(self):
        self.calls = []
        self.gnu_get_libc_version = object()
        fake = self

        def mallopt(param, value):
            fake.calls.append((param, value))
            return 1
        self.mallopt = mallopt


def _fresh(monkeypatch, fake=None):
    monkeypatch.setattr(allocator, "_done", False)
    if fake is not None:
        monkeypatch.setattr(allocator.ctypes, "CDLL", lambda name: fake)
        monkeypatch.setattr(allocator.sys, "platform", "linux")


def test_applied_once_with_glibc_parameters(monkeypatch):
    fake = _FakeLibc()
    _fresh(monkeypatch, fake)
    monkeypatch.delenv("DLBATCH_TORCH_MALLOC_TUNING", raising=False)
    assert allocator.tune_malloc_for_training() is True
    assert allocator.tune_malloc_for_training() is False  # once per process
    assert fake.calls == [(-3, 32 * 1024 * 1024), (-1, 2 ** 31 - 1)]


@pytest.mark.parametrize("value", ["0", "off", "no", "false"])
def test_switched_off_by_the_environment(monkeypatch, value):
    fake = _FakeLibc()
    _fresh(monkeypatch, fake)
    monkeypatch.setenv("DLBATCH_TORCH_MALLOC_TUNING", value)
    assert allocator.tune_malloc_for_training() is False and fake.calls == []


def test_other_c_libraries_are_left_alone(monkeypatch):
    fake = _FakeLibc()
    del fake.gnu_get_libc_version
    _fresh(monkeypatch, fake)
    monkeypatch.delenv("DLBATCH_TORCH_MALLOC_TUNING", raising=False)
    assert allocator.tune_malloc_for_training() is False and fake.calls == []


@pytest.mark.skipif(platform.system() != "Linux" or not platform.libc_ver()[0] == "glibc", reason="glibc only")
def test_real_glibc_accepts_the_values(monkeypatch):
    _fresh(monkeypatch)
    monkeypatch.delenv("DLBATCH_TORCH_MALLOC_TUNING", raising=False)
    libc = ctypes.CDLL("libc.so.6")
    assert libc.mallopt(-3, 32 * 1024 * 1024) == 1  # what the module sets is within glibc's bounds
    assert allocator.tune_malloc_for_training() is True
