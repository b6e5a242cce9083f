"""``python -m fastgru``: the same as the ``fastgru`` command."""

import sys

from fastgru.apps.cli import main

sys.exit(main())
