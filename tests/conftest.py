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
