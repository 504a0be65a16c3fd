"""``python -m genrevision.cli``: the ``genrevision`` command."""
import sys

from . import main

sys.exit(main())
