"""`python -m discdiff ...`: the `discdiff` command where the package is importable but not installed."""

import sys

from .cli import main

sys.exit(main())
