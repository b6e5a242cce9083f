"""The CPU kernel's cache of large buffers: freed blocks are reused, small ones bypass it, release empties it."""

import pytest
import torch

from fastgru.backends import cpu

ext = cpu.load()
pytestmark = pytest.mark.skipif(ext is None, reason=f"the C++ extension did not build: {cpu.load_error()}")


def test_freed_buffer_is_reused_then_released():
    cpu.release_workspace()
    assert ext.cached_buffer_bytes() == 0
    t = ext.empty_cached([3 << 20], torch.float32)  # 12 MiB
    t.copy_(torch.randn(3 << 20))  # usable memory
    where = t.data_ptr()
    del t
    assert ext.cached_buffer_bytes() >= 12 << 20
    u = ext.empty_cached([2, 3 << 19], torch.float32)  # same size, other shape: the same block
    assert u.data_ptr() == where and tuple(u.shape) == (2, 3 << 19)
    assert ext.cached_buffer_bytes() == 0
    del u
    cpu.release_workspace()
    assert ext.cached_buffer_bytes() == 0


def test_small_buffers_and_too_large_blocks_are_not_mixed():
    cpu.release_workspace()
    small = ext.empty_cached([1000], torch.float32)  # below 1 MiB: plain allocation
    del small
    assert ext.cached_buffer_bytes() == 0
    big = ext.empty_cached([16 << 20], torch.float32)  # 64 MiB block
    del big
    other = ext.empty_cached([2 << 20], torch.float32)  # 8 MiB: a block 8x larger is not used for it
    assert ext.cached_buffer_bytes() >= 64 << 20
    del other
    cpu.release_workspace()


def test_every_source_allocates_from_the_one_cache():
    """forward.cpp and backward.cpp take their buffers from the cache that the bindings measure and release:
    the kernel is several sources, and a cache per source would never be released or reused across them."""
    T, B, H = 64, 16, 256
    nbytes = T * B * 3 * H * 4  # one (T, B, 3H) float32 buffer: 3 MiB
    cpu.release_workspace()
    gi = ext.project(torch.randn(T, B, 8), torch.randn(3 * H, 8), torch.randn(3 * H), False)  # forward.cpp
    assert ext.cached_buffer_bytes() == 0
    del gi
    assert ext.cached_buffer_bytes() >= nbytes
    cpu.release_workspace()
    w_hh = torch.randn(3 * H, H) * 0.05
    buf, gates = cpu.recurrence_forward(torch.randn(T, B, 3 * H), torch.zeros(B, H), w_hh, None, None,
                                        True, False, True)
    grads = cpu.recurrence_backward(torch.randn_like(buf), buf, gates, w_hh, None, True, False)  # backward.cpp
    before = ext.cached_buffer_bytes()
    del grads  # dgi (T, B, 3H) and dgh_n go back to the cache
    assert ext.cached_buffer_bytes() >= before + nbytes
    del buf, gates
    cpu.release_workspace()
    assert ext.cached_buffer_bytes() == 0
