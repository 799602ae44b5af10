"""``python -m dt``: see :mod:`dt.cli.commands`."""

import sys

from dt.cli.commands import main

sys.exit(main())
