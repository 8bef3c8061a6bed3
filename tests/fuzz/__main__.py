"""``python -m tests.fuzz``: the long run (see the package's docstring)."""

import sys

from tests.fuzz.run import main

if __name__ == "__main__":
    sys.exit(main())
