"""``python -m gradbridge`` runs the same command line as the ``gradbridge`` script."""

import sys

from gradbridge.cli import main

sys.exit(main())
