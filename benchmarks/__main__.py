"""``python -m benchmarks``: see the package docstring."""

import sys

from benchmarks.harness import main

sys.exit(main())
