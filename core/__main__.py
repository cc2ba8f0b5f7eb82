"""``python -m hookcast``: the same as the ``hookcast`` command."""

import sys

from hookcast.cli import main

sys.exit(main())
