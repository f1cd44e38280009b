"""``python -m vdnodes_gui [GRAPH]``."""

import sys

from vdnodes_gui import launch

sys.exit(launch(sys.argv[1] if len(sys.argv) > 1 else None))
