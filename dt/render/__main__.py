"""``python -m dt.render``: the timing command line (:mod:`dt.render.cli`)."""

import sys

from dt.errors import run_cli
from dt.render.cli import main

sys.exit(run_cli(main))
