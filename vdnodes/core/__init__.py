"""The engine: socket types, node declarations, graphs, cache and executor.

It knows nothing about Versatile Diffusion and imports no torch, so the CLI's
``--help``, ``validate`` and ``nodes`` start fast. Torch tensors are handled by
duck typing (``.shape``, ``.device``, ``.element_size()``).
"""
