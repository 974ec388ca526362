"""``python -m workflow_retry``: see :mod:`workflow_retry.cli`."""

import sys

from workflow_retry.cli import main

if __name__ == "__main__":
    sys.exit(main())
