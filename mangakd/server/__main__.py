"""Run the inference server: ``python -m mangakd.server EXPORT_DIR [options]``."""

import sys

from mangakd.server.serve import main

sys.exit(main())
