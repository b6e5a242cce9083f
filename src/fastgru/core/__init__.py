"""The core of fastgru: the GRU's math and its contracts, free of any module or file format.

- :mod:`fastgru.core.functional`: the functional form (``gru``, ``gru_cell``) that every module calls and
  that dispatches to a backend (:mod:`fastgru.backends`);
- :mod:`fastgru.core.reference`: the float64 step-by-step oracle the tests compare against;
- :mod:`fastgru.core.validation`: the checks on inputs and options shared by all backends;
- :mod:`fastgru.core.errors`: the error types users catch.

``fastgru.functional`` and ``fastgru.reference`` remain the public names of the first two.
"""
