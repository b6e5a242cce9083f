"""Shared test set-up: a fresh random seed per test (printed, so a failure can be replayed)."""

import os
import random

import pytest
import torch

# Without a GPU, Triton kernels run in its interpreter; this must be set before anything imports triton
# (its library functions are built for the interpreter at import).
if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")


@pytest.fixture(autouse=True)
def fresh_seed():
    """Seed torch with a new seed every test; FASTGRU_TEST_SEED=<n> replays one."""
    seed = int(os.environ.get("FASTGRU_TEST_SEED", random.randrange(2**31)))
    torch.manual_seed(seed)
    print(f"fastgru test seed: FASTGRU_TEST_SEED={seed}")
    return seed


CORE_BACKENDS = ["cpu", "torch"]


@pytest.fixture(scope="module")
def keras():
    """Keras 3 on its torch backend (the interop tests compare fastgru with it); skipped when not installed."""
    os.environ.setdefault("KERAS_BACKEND", "torch")
    keras = pytest.importorskip("keras", reason="keras is not installed (pip install fastgru[interop])")
    if keras.backend.backend() != "torch":
        pytest.skip(f"keras was already imported with the {keras.backend.backend()!r} backend; these tests need torch")
    return keras
