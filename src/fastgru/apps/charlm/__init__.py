"""Character language models: time-budgeted training, sizing, held-out scoring and compressor baselines.

- :mod:`fastgru.apps.charlm.training`: truncated BPTT over long streams with the state carried across batches,
  a learning-rate schedule over the step or time budget, periodic validation that keeps the best weights,
  and :func:`~fastgru.apps.charlm.training.stream_bits_per_char`, which scores a text as one continuous stream.
- :mod:`fastgru.apps.charlm.sizing`: the default model for a text and a time budget.
- :mod:`fastgru.apps.charlm.compressors`: bz2 and lzma as baselines, in bits per character of held-out text
  given the training text as prefix.
"""
