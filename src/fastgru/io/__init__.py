"""Files fastgru writes and reads: checkpoints, exports, atomic writes, settings, Markdown sections.

- :mod:`fastgru.io.checkpoint`: checksummed single-file checkpoints of a module and its config
  (``fastgru.save`` / ``fastgru.load``);
- :mod:`fastgru.io.export`: files other runtimes read (ONNX);
- :mod:`fastgru.io.atomic`: write-then-rename, so no reader ever sees half a file and no user file is
  replaced without being asked;
- :mod:`fastgru.io.settings`: dataclass settings saved as JSON and read back strictly;
- :mod:`fastgru.io.markdown`: one marked section of a Markdown file replaced in place.

``fastgru.checkpoint`` and ``fastgru.export`` remain the public names of the first two.
"""
