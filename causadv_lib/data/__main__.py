"""``python -m causadv_lib.data {verify,fetch}``: runs `cli.main` (kept in `cli` so that importing the
package for `data.main` does not load this module before runpy executes it)."""
import sys

from causadv_lib.data.cli import main

if __name__ == "__main__":
    sys.exit(main())
