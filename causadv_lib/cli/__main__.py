"""``python -m causadv_lib.cli``: the ``causadv`` command line."""
import sys

from . import main

sys.exit(main())
