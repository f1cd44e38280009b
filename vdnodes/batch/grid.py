"""The contact sheet: one labelled grid PNG of a one- or two-axis sweep, like VD's own figures.

Rows are the first swept param's values, columns the second's (a one-axis sweep is one row).
Each cell is the first image an item saved; axis names and values label the rows and columns.
The PNG embeds the sweep graph (its ``sweep`` block holding the values run), so
``vdnodes run sheet.png`` runs the sweep again.
"""

from __future__ import annotations

import io
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from vdnodes.batch.spec import Sweep, value_label
from vdnodes.core.errors import UserInputError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp")
PAD = 6
FONT_SIZE = 14
MIN_CELL = 128  # pixels: the shorter side a cell is enlarged to, at least
LAYOUT_KEY = "vdnodes_grid"  # PNG text: where the cells are (the canvas maps a click to its item)


def sweep_graph(sweep: Sweep) -> Any:
    """The graph with a ``sweep`` block holding exactly the values this sweep ran."""
    g = sweep.graph.copy()
    g.sweep = {"params": {a.name: list(a.values) for a in sweep.axes}}
    if sweep.zip:
        g.sweep["zip"] = True
    return g


def grid_problem(sweep: Sweep) -> str | None:
    """Why ``sweep`` cannot be drawn as a contact sheet, or None."""
    if sweep.grid_shape() is not None:
        return None
    return ("--grid draws sweeps of one or two params (a row, or rows x columns); this one has "
            f"{len(sweep.axes)} swept params{' and an items list' if sweep.from_list else ''}")


def write_grid(sweep: Sweep, records: Mapping[str, Mapping[str, Any]], out_dir: str,
               registry: Any = None) -> Path | None:
    """Draw the sheet from the manifest ``records`` (by item id); None when no item has an image."""
    from PIL import Image, ImageDraw
    from PIL.PngImagePlugin import PngInfo

    from vdnodes.core.fileio import write_new_file
    from vdnodes.core.graph import dump_graph
    from vdnodes.core.pngmeta import GRAPH_KEY, MANIFEST_KEY
    from vdnodes.core.provenance import record_inputs

    axes = sweep.grid_shape()
    if axes is None:
        raise UserInputError(grid_problem(sweep))
    rows_axis, cols_axis = (None, axes[0]) if len(axes) == 1 else (axes[0], axes[1])
    n_rows = 1 if rows_axis is None else len(rows_axis.values)
    n_cols = len(cols_axis.values)
    cells: dict[int, Any] = {}
    for item in sweep.items:
        rec = records.get(item.id)
        image = _first_image(Path(out_dir), rec) if rec and rec.get("status") == "ok" else None
        if image is not None:
            cells[item.index] = image
    if not cells:
        return None
    w = max(im.width for im in cells.values())
    h = max(im.height for im in cells.values())
    scale = max(1, -(-MIN_CELL // max(w, h)))  # small images (vd-nano's) are enlarged, pixels kept sharp
    if scale > 1:
        cells = {i: im.resize((im.width * scale, im.height * scale), Image.Resampling.NEAREST)
                 for i, im in cells.items()}
        w, h = w * scale, h * scale
    font = _font()
    measure = ImageDraw.Draw(Image.new("RGB", (1, 1)))
    text_h = FONT_SIZE + 4
    row_labels = [f"{rows_axis.name}={value_label(v)}" for v in rows_axis.values] if rows_axis else []
    left = max((measure.textlength(t, font=font) for t in row_labels), default=0)
    left = int(left) + 2 * PAD if row_labels else PAD
    top = 2 * text_h + PAD
    title = f"columns: {cols_axis.name}" + (f"   rows: {rows_axis.name}" if rows_axis else "")
    width = max(left + n_cols * (w + PAD), int(measure.textlength(title, font=font)) + 2 * PAD)
    sheet = Image.new("RGB", (width, top + n_rows * (h + PAD)), "white")
    draw = ImageDraw.Draw(sheet)
    draw.text((PAD, 2), title, fill="black", font=font)
    for c, v in enumerate(cols_axis.values):
        draw.text((left + c * (w + PAD), text_h + 2), value_label(v), fill="black", font=font)
    for r, text in enumerate(row_labels):
        draw.text((PAD, top + r * (h + PAD) + h // 2 - text_h // 2), text, fill="black", font=font)
    for item in sweep.items:
        im = cells.get(item.index)
        r, c = divmod(item.index, n_cols)
        if im is None:
            draw.rectangle([left + c * (w + PAD), top + r * (h + PAD),
                            left + c * (w + PAD) + w - 1, top + r * (h + PAD) + h - 1], outline="red")
            draw.text((left + c * (w + PAD) + 4, top + r * (h + PAD) + 4), "failed", fill="red", font=font)
            continue
        sheet.paste(im.convert("RGB"), (left + c * (w + PAD), top + r * (h + PAD)))
    graph = sweep_graph(sweep)
    info = PngInfo()
    info.add_itxt(GRAPH_KEY, dump_graph(graph), zip=True)
    from vdnodes.core.executor import graph_dir

    manifest = {"inputs": record_inputs(graph, registry, graph_dir(graph)), "sweep_sheet": True}
    info.add_itxt(MANIFEST_KEY, json.dumps(manifest, sort_keys=True), zip=True)
    layout = {"left": left, "top": top, "cell": [w, h], "pad": PAD, "rows": n_rows, "cols": n_cols}
    info.add_itxt(LAYOUT_KEY, json.dumps(layout))
    buf = io.BytesIO()
    sheet.save(buf, format="PNG", pnginfo=info)
    out = Path(out_dir)
    return write_new_file((out / f"sweep_grid_{i:05d}.png" for i in range(1, 10**6)), buf.getvalue())


def cell_at(layout: Mapping[str, Any], x: float, y: float) -> int | None:
    """The item index of the cell under sheet pixel (x, y) (``LAYOUT_KEY``'s layout), or None."""
    w, h = layout["cell"]
    c, cx = divmod(x - layout["left"], w + layout["pad"])
    r, cy = divmod(y - layout["top"], h + layout["pad"])
    if not (0 <= c < layout["cols"] and 0 <= r < layout["rows"]) or cx >= w or cy >= h:
        return None
    return int(r) * layout["cols"] + int(c)


def _first_image(out_dir: Path, rec: Mapping[str, Any]) -> Any:
    from PIL import Image

    for name in rec.get("files", []):
        if name.lower().endswith(IMAGE_SUFFIXES) and (out_dir / name).is_file():
            with Image.open(out_dir / name) as im:
                return im.copy()
    return None


def _font() -> Any:
    from PIL import ImageFont

    try:
        return ImageFont.load_default(size=FONT_SIZE)
    except TypeError:  # Pillow < 10.1: the fixed bitmap font
        return ImageFont.load_default()
