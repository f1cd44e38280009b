"""``python -m vdnodes`` is the ``vdnodes`` command."""

import sys

from vdnodes.cli import main

sys.exit(main())
