"""Readable at first sight: at the opening zoom of every example graph, card titles and param text
are at least 11 px high and meet WCAG AA contrast (4.5:1) against what they are drawn on."""

from __future__ import annotations

import pytest
from PySide6.QtGui import QColor

from vdnodes_gui import theme

from tests.gui.actions import GRAPHS

MIN_PX = 11.0
MIN_CONTRAST = 4.5


def luminance(color: QColor) -> float:
    """WCAG 2 relative luminance."""
    def channel(c: float) -> float:
        return c / 12.92 if c <= 0.03928 else ((c + 0.055) / 1.055) ** 2.4

    return 0.2126 * channel(color.redF()) + 0.7152 * channel(color.greenF()) + 0.0722 * channel(color.blueF())


def contrast(a: QColor, b: QColor) -> float:
    hi, lo = sorted([luminance(a), luminance(b)], reverse=True)
    return (hi + 0.05) / (lo + 0.05)


def test_the_contrast_formula_matches_wcag_reference_values():
    assert contrast(QColor("#000000"), QColor("#ffffff")) == pytest.approx(21.0)
    assert contrast(QColor("#767676"), QColor("#ffffff")) == pytest.approx(4.54, abs=0.01)


@pytest.mark.parametrize("name", sorted(p.name for p in GRAPHS.glob("*.json")))
def test_cards_are_readable_at_the_opening_zoom(window, qtbot, name):
    window.resize(1280, 800)
    assert window.open_path(GRAPHS / name), window.last_message
    qtbot.wait(20)  # the deferred opening view, once the window has its size
    zoom = window.view.zoom()
    assert zoom >= 0.8
    for nid, item in window.scene.nodes.items():
        for what, font, fg, bg in item.text_styles():
            if what in ("title", "param name", "param value", "socket"):
                assert font.pixelSize() * zoom >= MIN_PX, (name, nid, what, font.pixelSize(), zoom)
            assert contrast(fg, bg) >= MIN_CONTRAST, (name, nid, what, fg.name(), bg.name())
    # Every node the graph shows is on screen or reachable through the minimap.
    assert window.minimap.isVisible()


def test_every_header_colour_a_user_can_pick_keeps_titles_readable():
    for color in [*theme.NODE_COLORS.values(), *theme.CATEGORY_COLORS.values(), theme.DEFAULT_CATEGORY_COLOR]:
        assert contrast(QColor(theme.TEXT), QColor(color)) >= MIN_CONTRAST, color
