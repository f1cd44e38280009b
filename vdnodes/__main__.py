"""``python -m vdnodes`` is the ``vdnodes`` command."""

from vdnodes.cli import entry

entry()
