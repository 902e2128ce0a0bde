"""``python -m mangakd_operator``: run the operator in the foreground."""

import sys

from .run import main

sys.exit(main())
