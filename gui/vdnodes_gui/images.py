"""Tensors to ``QImage``s: output images and cheap latent previews.

Safe to call from the run's worker thread (``QImage``, unlike ``QPixmap``, may
be built off the GUI thread). Tensors are read by duck typing (``detach``,
``float``, ``cpu``, ``numpy``) so the module imports no torch.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from PySide6.QtGui import QImage


def rgb_to_qimage(array: np.ndarray) -> QImage:
    """A uint8 array [H, W, 3] as a QImage that owns its pixels."""
    array = np.ascontiguousarray(array, dtype=np.uint8)
    h, w, _ = array.shape
    return QImage(array.data, w, h, 3 * w, QImage.Format_RGB888).copy()


def _numpy(tensor: Any) -> np.ndarray:
    return tensor.detach().float().cpu().numpy()


def image_tensor_to_qimages(images: Any) -> list[QImage]:
    """An Image value [B,3,H,W] in [0,1] -> one QImage per batch item."""
    pixels = (np.clip(_numpy(images), 0.0, 1.0) * 255.0).round().astype(np.uint8)  # [B, 3, H, W]
    return [rgb_to_qimage(p.transpose(1, 2, 0)) for p in pixels]


def latent_preview(latent: Any) -> QImage:
    """The first image of a latent [B,4,h,w]: channels 0-2 as RGB, min/max-normalised per image."""
    x = _numpy(latent)[0, :3]  # [3, h, w]
    lo, hi = float(x.min()), float(x.max())
    x = (x - lo) / (hi - lo) if hi > lo else np.zeros_like(x)
    return rgb_to_qimage((x * 255.0).round().astype(np.uint8).transpose(1, 2, 0))


def is_image_batch(value: Any) -> bool:
    shape = getattr(value, "shape", None)
    return shape is not None and len(shape) == 4 and int(shape[1]) == 3


def is_latent_batch(value: Any) -> bool:
    shape = getattr(value, "shape", None)
    return shape is not None and len(shape) == 4 and int(shape[1]) >= 3
