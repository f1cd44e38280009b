"""Sweeps and batch runs: one graph over many items (seeds, values, prompts, images).

``spec`` turns a graph's ``sweep`` block and the command line into validated items,
``manifest`` records finished items (resume), ``local`` runs them on one executor with a
shared cache, ``ray_backend`` across a Ray cluster, ``grid`` draws the contact sheet.
No torch or ray at import. docs/sweeps.md describes the Python API.
"""
