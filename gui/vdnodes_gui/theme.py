"""The canvas's look: one dark palette, category colours, fonts and the widget stylesheet.

Everything visual that is not geometry lives here, so the view items and the
panels share one set of colours. No state, no widgets.
"""

from __future__ import annotations

from PySide6.QtGui import QColor, QFont, QPalette
from PySide6.QtWidgets import QApplication

# Surfaces, darkest first.
CANVAS = "#16181d"
GRID_MINOR = "#1d2027"
GRID_MAJOR = "#252933"
PANEL = "#1f2229"
PANEL_ALT = "#262a33"
NODE_BODY = "#2a2e37"
NODE_BORDER = "#3a3f4b"
FIELD = "#15171c"
TEXT = "#e6e8ee"
TEXT_DIM = "#9aa1b1"
TEXT_FAINT = "#6b7283"
ACCENT = "#5b9cff"
ACCENT_TEXT = "#8ab8ff"  # links and toggles drawn as text on dark surfaces
SELECTED = "#ffcc66"
ERROR = "#ff5f56"
ERROR_TEXT = "#ffb3ad"
FRAME = "#7f8aa3"  # frames without a colour of their own  # error messages on dark surfaces
WARNING = "#ffb347"

# Node header colours by category (muted so that socket colours stay readable).
CATEGORY_COLORS = {
    "model": "#8e3b46",
    "input": "#2f6f4f",
    "encode": "#2b5f8a",
    "context": "#226b6b",
    "sample": "#6a4c93",
    "edit": "#75581f",
    "decode": "#3d5a99",
    "image": "#4a6b2f",
    "output": "#7a4a2a",
}
DEFAULT_CATEGORY_COLOR = "#4a505e"

# Node run states -> badge colour.
STATE_COLORS = {
    "idle": TEXT_FAINT,
    "queued": "#8a93a6",
    "running": ACCENT,
    "done": "#5fd38d",
    "cached": "#4fc1c9",
    "stale": WARNING,
    "failed": ERROR,
    "cancelled": "#c9a0ff",
    "skipped": "#b8bfcc",
}

# Header colours a user can give a node (all keep white titles above WCAG AA 4.5:1).
NODE_COLORS = {
    "red": "#8e3b46", "orange": "#7a4a2a", "yellow": "#6e5a1c", "green": "#2f6f4f",
    "teal": "#226b6b", "blue": "#2b5f8a", "purple": "#6a4c93", "grey": "#4a505e",
}


def category_color(category: str) -> QColor:
    return QColor(CATEGORY_COLORS.get(category, DEFAULT_CATEGORY_COLOR))


def ui_font(size: float = 9.5, bold: bool = False) -> QFont:
    font = QFont("DejaVu Sans")
    font.setPointSizeF(size)
    font.setBold(bold)
    return font


def mono_font(size: float = 9.0) -> QFont:
    font = QFont("DejaVu Sans Mono")
    font.setPointSizeF(size)
    return font


STYLESHEET = f"""
QMainWindow, QWidget {{ background: {PANEL}; color: {TEXT}; }}
QMainWindow::separator {{ background: {CANVAS}; width: 3px; height: 3px; }}
QDockWidget {{ titlebar-close-icon: none; color: {TEXT_DIM}; }}
QDockWidget::title {{ background: {PANEL}; padding: 6px 10px; }}
QToolBar {{ background: {PANEL}; border: none; border-bottom: 1px solid {CANVAS}; padding: 4px; spacing: 4px; }}
QToolButton {{ background: transparent; color: {TEXT}; border: 1px solid transparent; border-radius: 5px;
              padding: 4px 10px; }}
QToolButton:hover {{ background: {PANEL_ALT}; border-color: {NODE_BORDER}; }}
QToolButton:disabled {{ color: {TEXT_FAINT}; }}
QToolButton#run {{ background: #2f7d4f; border-color: #3c9a63; font-weight: bold; }}
QToolButton#run:hover {{ background: #379159; }}
QToolButton#run:disabled {{ background: {PANEL_ALT}; border-color: {NODE_BORDER}; color: {TEXT_FAINT}; }}
QToolButton#cancel:enabled {{ background: #7d2f35; border-color: #9a3c43; }}
QLineEdit, QPlainTextEdit, QSpinBox, QDoubleSpinBox, QComboBox {{
    background: {FIELD}; color: {TEXT}; border: 1px solid {NODE_BORDER}; border-radius: 4px;
    padding: 3px 5px; selection-background-color: {ACCENT}; }}
QLineEdit:focus, QPlainTextEdit:focus, QSpinBox:focus, QDoubleSpinBox:focus, QComboBox:focus {{
    border-color: {ACCENT}; }}
/* Spin boxes step with the wheel and arrow keys; their buttons are hidden (zero width, because
   NoButtons under a style sheet collapses the text field). */
QAbstractSpinBox::up-button, QAbstractSpinBox::down-button {{ width: 0px; border: none; }}
QAbstractSpinBox::up-arrow, QAbstractSpinBox::down-arrow {{ width: 0px; }}
QComboBox QAbstractItemView {{ background: {PANEL_ALT}; selection-background-color: {ACCENT}; }}
QPushButton {{ background: {PANEL_ALT}; border: 1px solid {NODE_BORDER}; border-radius: 4px; padding: 3px 8px; }}
QPushButton:hover {{ border-color: {ACCENT}; }}
QCheckBox {{ spacing: 6px; }}
QTreeWidget, QListWidget {{ background: {PANEL}; border: none; outline: none; }}
QTreeWidget::item {{ padding: 3px 2px; border-radius: 3px; }}
QTreeWidget::item:hover, QListWidget::item:hover {{ background: {PANEL_ALT}; }}
QTreeWidget::item:selected, QListWidget::item:selected {{ background: #33415c; color: {TEXT}; }}
QTabWidget::pane {{ border: none; border-top: 1px solid {NODE_BORDER}; }}
QTabBar::tab {{ background: transparent; color: {TEXT_DIM}; padding: 6px 12px; border: none; }}
QTabBar::tab:selected {{ color: {TEXT}; border-bottom: 2px solid {ACCENT}; }}
QStatusBar {{ background: {CANVAS}; color: {TEXT_DIM}; }}
QLabel#heading {{ font-size: 12pt; font-weight: bold; }}
QLabel#dim {{ color: {TEXT_DIM}; }}
QLabel#caption {{ color: {TEXT_DIM}; }}
QLabel#section {{ color: {TEXT_FAINT}; font-size: 8pt; font-weight: bold; padding-top: 8px;
                 border-bottom: 1px solid {NODE_BORDER}; }}
QScrollBar:vertical {{ background: {PANEL}; width: 10px; }}
QScrollBar::handle:vertical {{ background: {NODE_BORDER}; border-radius: 4px; min-height: 24px; }}
QScrollBar:horizontal {{ background: {PANEL}; height: 10px; }}
QScrollBar::handle:horizontal {{ background: {NODE_BORDER}; border-radius: 4px; min-width: 24px; }}
QScrollBar::add-line, QScrollBar::sub-line {{ width: 0; height: 0; }}
QMenu {{ background: {PANEL_ALT}; border: 1px solid {NODE_BORDER}; }}
QMenu::item:selected {{ background: {ACCENT}; }}
QMenuBar {{ background: {PANEL}; }}
QMenuBar::item:selected {{ background: {PANEL_ALT}; }}
QToolTip {{ background: {PANEL_ALT}; color: {TEXT}; border: 1px solid {NODE_BORDER}; padding: 4px; }}
QSplitter::handle {{ background: {CANVAS}; }}
"""


def apply(app: QApplication) -> None:
    """Fusion style, a dark palette and the stylesheet, for the whole application."""
    app.setStyle("Fusion")
    pal = QPalette()
    roles = {
        QPalette.Window: PANEL, QPalette.WindowText: TEXT, QPalette.Base: FIELD,
        QPalette.AlternateBase: PANEL_ALT, QPalette.Text: TEXT, QPalette.Button: PANEL_ALT,
        QPalette.ButtonText: TEXT, QPalette.Highlight: ACCENT, QPalette.HighlightedText: "#ffffff",
        QPalette.ToolTipBase: PANEL_ALT, QPalette.ToolTipText: TEXT, QPalette.PlaceholderText: TEXT_FAINT,
    }
    for role, color in roles.items():
        pal.setColor(role, QColor(color))
    app.setPalette(pal)
    app.setFont(ui_font())
    app.setStyleSheet(STYLESHEET)
