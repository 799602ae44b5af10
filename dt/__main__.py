"""``python -m dt``: see :mod:`dt.cli`."""

import sys

from dt.cli import main

sys.exit(main())
