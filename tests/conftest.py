"""Test-wide settings: no network, no display, deterministic and small."""

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# Idle OpenMP threads sleep instead of spinning: on a 2-core machine spinning workers
# starve the Qt event loop and other processes (measured: up to 5x slower runs).
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
