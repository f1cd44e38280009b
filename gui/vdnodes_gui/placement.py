"""Where new nodes go: at the cursor or next to the selection, never on top of another card.

Pure geometry over ``(x, y, w, h)`` rectangles; no Qt.
"""

from __future__ import annotations

Rect = tuple[float, float, float, float]
GAP = 24.0


def overlaps(a: Rect, b: Rect, gap: float = GAP / 2) -> bool:
    return a[0] < b[0] + b[2] + gap and b[0] < a[0] + a[2] + gap and \
        a[1] < b[1] + b[3] + gap and b[1] < a[1] + a[3] + gap


def free_spot(want: Rect, taken: list[Rect], step: float = GAP) -> tuple[float, float]:
    """The top-left nearest below ``want`` (then right of it) where it overlaps nothing in ``taken``."""
    x0, y0, w, h = want
    for column in range(0, 40):
        x = x0 + column * (w + GAP)
        y = y0
        for _ in range(200):
            hit = [t for t in taken if overlaps((x, y, w, h), t)]
            if not hit:
                return x, y
            y = max(t[1] + t[3] for t in hit) + GAP if column == 0 else y + step
            if y > y0 + 20 * (h + GAP):
                break
    return x0, y0


def group_spot(group: list[Rect], anchor: tuple[float, float], taken: list[Rect]) -> tuple[float, float]:
    """The shift that puts a group's top-left at ``anchor`` (or the nearest free place below it)."""
    left = min(r[0] for r in group)
    top = min(r[1] for r in group)
    width = max(r[0] + r[2] for r in group) - left
    height = max(r[1] + r[3] for r in group) - top
    x, y = free_spot((anchor[0], anchor[1], width, height), taken)
    return x - left, y - top


def beside(selection: list[Rect]) -> tuple[float, float]:
    """The top-left just right of a selection's bounding box."""
    right = max(r[0] + r[2] for r in selection)
    top = min(r[1] for r in selection)
    return right + 2 * GAP, top
