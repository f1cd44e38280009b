"""vdnodes: Versatile Diffusion as typed nodes, run by one DAG executor.

Importing this package is cheap: torch, transformers and Qt are imported lazily
by the modules that need them.
"""

__version__ = "0.1.0"
