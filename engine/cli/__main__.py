"""``python -m engine.cli``: the same as the ``hookwire`` console script."""

import sys

from engine.cli.commands import main

sys.exit(main())
