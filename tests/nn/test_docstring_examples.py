"""The examples in the public modules' docstrings run and print what they say."""

from __future__ import annotations

import doctest

import pytest
import torch

import fastgru
import fastgru.mingru.module
import fastgru.nn.gru


@pytest.mark.parametrize("obj", [fastgru.nn.gru.GRU, fastgru.nn.gru.GRUCell, fastgru.mingru.module.MinGRU])
def test_docstring_examples_run(obj):
    finder = doctest.DocTestFinder(recurse=False)
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS)
    tests = finder.find(obj, globs={"fastgru": fastgru, "torch": torch})
    assert tests and tests[0].examples, f"{obj.__name__} has no example"
    for test in tests:
        runner.run(test)
    assert runner.failures == 0
