"""Bad and unusual input: every case ends in exit 2 with one paragraph naming the file, or works.

The fast half of the hardening battery (docs/reliability.md); ``scripts/battery.py`` runs
the slow cases (a real 20,000 x 20,000 image, many concurrent runs) a maintainer reruns.
"""

from __future__ import annotations

import json
import os
import shutil
import stat
import struct
import subprocess
import sys
import time
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from PIL.PngImagePlugin import PngInfo

from vdnodes.cli import main
from vdnodes.core.pngmeta import GRAPH_KEY, MANIFEST_KEY, read_png_text

ROOT = Path(__file__).resolve().parents[2]
RED = ROOT / "graphs" / "inputs" / "red_circle_on_blue.png"


def cli(capsys, *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


def graph_file(tmp_path: Path, name: str = "hello", **params) -> Path:
    """A copy of an example graph (with its input images beside it) and some params changed."""
    folder = tmp_path / "graph"
    if not folder.exists():
        shutil.copytree(ROOT / "graphs" / "inputs", folder / "inputs")
    data = json.loads((ROOT / "graphs" / f"{name}.json").read_text())
    for spec in data["nodes"].values():
        if spec["type"] == "vd.denoise":
            spec["params"]["steps"] = 3
    for ref, value in params.items():
        nid, param = ref.split("__")
        data["nodes"][nid]["params"][param] = value
    path = folder / f"{name}.json"
    path.write_text(json.dumps(data))
    return path


def tiny_png(path: Path, width: int, height: int) -> Path:
    """A PNG header claiming ``width`` x ``height`` pixels, with no pixel data (costs nothing to make)."""
    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64))
                     + chunk(b"IEND", b""))
    return path


# -- numbers that are not numbers ---------------------------------------------------------------

@pytest.mark.parametrize("value", ["nan", "inf", "-inf"])
def test_non_finite_floats_are_refused_from_set_and_from_files(tmp_path, capsys, value):
    code, _, err = cli(capsys, "validate", str(graph_file(tmp_path)), "--set", f"recolor.strength={value}")
    assert code == 2 and "recolor.strength" in err and "finite" in err, err
    text = graph_file(tmp_path).read_text().replace('"strength": 0.8', f'"strength": {"NaN" if value == "nan" else "Infinity"}')
    bad = tmp_path / "nan.json"
    bad.write_text(text)
    code, _, err = cli(capsys, "validate", str(bad))
    assert code == 2 and "node 'recolor'" in err and "finite" in err, err


# -- JSON edge cases ------------------------------------------------------------------------------

def test_duplicate_keys_and_deep_nesting_are_exit_2_with_a_location(tmp_path, capsys):
    dup = tmp_path / "dup.json"
    text = graph_file(tmp_path).read_text()
    dup.write_text(text.replace('"nodes": {', '"nodes": {"save": {"type": "vd.text"}, ', 1))
    code, _, err = cli(capsys, "validate", str(dup))
    assert code == 2 and "'save' twice" in err and "line 1, column" in err, err
    twice = tmp_path / "twice.json"
    twice.write_text('{"format": "vdnodes.graph", "version": 1,\n "nodes": {},\n "nodes": {}}')
    code, _, err = cli(capsys, "run", str(twice))
    assert code == 2 and "'nodes' twice" in err and "line 3, column 2" in err, err
    deep = tmp_path / "deep.json"
    deep.write_text('{"format": "vdnodes.graph", "meta": ' + "[" * 100_000 + "]" * 100_000 + "}")
    code, _, err = cli(capsys, "run", str(deep))
    assert code == 2 and "nested more than" in err and "line 1, column" in err, err


# -- files that are not regular files, or too big ---------------------------------------------------

def test_a_fifo_or_a_device_as_image_is_refused_without_reading_it(tmp_path, capsys):
    fifo = tmp_path / "pipe.png"
    os.mkfifo(fifo)
    for path in (fifo, Path("/dev/zero")):
        t0 = time.monotonic()
        code, _, err = cli(capsys, "run", str(graph_file(tmp_path, scene__path=str(path))), "--out", str(tmp_path / "o"))
        assert code == 2 and "node 'scene'" in err and "regular file" in err, err
        assert time.monotonic() - t0 < 60
    os.mkfifo(tmp_path / "graph.json")
    code, _, err = cli(capsys, "validate", str(tmp_path / "graph.json"))
    assert code == 2 and "named pipe" in err, err


def test_images_over_the_pixel_limit_are_refused_before_decoding(tmp_path, capsys, monkeypatch):
    for side in (20_000, 10_000):
        big = tiny_png(tmp_path / f"big{side}.png", side, side)
        code, _, err = cli(capsys, "run", str(graph_file(tmp_path, scene__path=str(big))), "--out", str(tmp_path / "o"))
        assert code == 2 and "megapixel limit" in err and "VDNODES_MAX_IMAGE_PIXELS" in err, err
    monkeypatch.setenv("VDNODES_MAX_IMAGE_PIXELS", str(10_000 * 10_000))
    code, _, err = cli(capsys, "validate", str(graph_file(tmp_path, scene__path=str(tmp_path / "big10000.png"))))
    assert code == 0, err  # the limit is raised: the header alone passes the dry run
    monkeypatch.setenv("VDNODES_MAX_INPUT_BYTES", "100")
    code, _, err = cli(capsys, "validate", str(graph_file(tmp_path)))
    assert code == 2 and "VDNODES_MAX_INPUT_BYTES" in err, err


# -- corrupt containers ---------------------------------------------------------------------------------

def test_a_damaged_text_chunk_is_exit_2_in_run_and_graph_from_png(tmp_path, capsys):
    code, out, err = cli(capsys, "run", str(graph_file(tmp_path)), "--out", str(tmp_path / "o"))
    assert code == 0, err
    png = tmp_path / "o" / "hello_00001.png"
    data = bytearray(png.read_bytes())
    at = data.index(GRAPH_KEY.encode()) + len(GRAPH_KEY) + 10  # inside the compressed graph
    data[at:at + 8] = b"\xff" * 8
    bad = tmp_path / "bad.png"
    bad.write_bytes(bytes(data))
    for command in ("run", "graph-from-png"):
        code, _, err = cli(capsys, command, str(bad))
        assert code == 2 and str(bad) in err and "damaged" in err and "internal error" not in err, err


def test_a_png_with_a_large_graph_can_be_read_back_as_an_input_image(tmp_path, capsys):
    graph = {"format": "vdnodes.graph", "version": 1,
             "nodes": {f"n{i:05d}": {"type": "vd.text", "params": {"text": f"prompt number {i} " * 4}}
                       for i in range(10_000)}}
    text = json.dumps(graph)
    assert len(text) > 1_048_576  # past Pillow's default text-chunk limit (ImageFile.SAFEBLOCK)
    info = PngInfo()
    info.add_itxt(GRAPH_KEY, text, zip=True)
    big = tmp_path / "big_graph.png"
    Image.open(RED).save(big, pnginfo=info)
    code, _, err = cli(capsys, "run", str(graph_file(tmp_path, scene__path=str(big))), "--out", str(tmp_path / "o"))
    assert code == 0, err
    assert json.loads(read_png_text(big)[GRAPH_KEY])["nodes"]["n09999"]


# -- text the tokenizers cannot take, long names -------------------------------------------------------

def test_lone_surrogates_in_text_are_refused_naming_the_param(tmp_path, capsys):
    path = graph_file(tmp_path, "text_to_image")
    path.write_text(path.read_text().replace('"text": "', '"text": "\\ud800 ', 1))
    code, _, err = cli(capsys, "run", str(path), "--out", str(tmp_path / "o"))
    assert code == 2 and "surrogate" in err and "param 'text'" in err, err


def test_over_long_and_empty_prefixes_are_refused_at_validation(tmp_path, capsys):
    code, _, err = cli(capsys, "validate", str(graph_file(tmp_path, save__prefix="x" * 400)))
    assert code == 2 and "node 'save'" in err and "at most 200" in err, err
    code, _, err = cli(capsys, "validate", str(graph_file(tmp_path, save__prefix="///")))
    assert code == 2 and "no letter or digit" in err, err
    code, out, err = cli(capsys, "run", str(graph_file(tmp_path, save__prefix="y" * 200)), "--out", str(tmp_path / "o"))
    assert code == 0 and (tmp_path / "o" / ("y" * 200 + "_00001.png")).is_file(), err


# -- 16-bit and float images --------------------------------------------------------------------------------

def test_high_bit_depth_images_keep_their_range(tmp_path):
    from vdnodes.nodes.io import image_pixels

    ramp16 = np.linspace(0, 65535, 64 * 64).reshape(64, 64).astype(np.uint16)
    Image.fromarray(ramp16).save(tmp_path / "g16.png")
    with Image.open(tmp_path / "g16.png") as im:
        assert im.mode.startswith("I")
        pixels = image_pixels(im)
    assert pixels.shape == (64, 64, 3)
    np.testing.assert_allclose(pixels[..., 0], ramp16 / 65535.0, atol=1e-6)  # not clipped to white
    floats = Image.fromarray(np.linspace(-2.0, 6.0, 64 * 64).reshape(64, 64).astype(np.float32), mode="F")
    got = image_pixels(floats)
    assert got.min() == 0.0 and got.max() == 1.0 and abs(float(got.mean()) - 0.5) < 1e-3
    assert image_pixels(floats, size=32).shape == (32, 32, 3)


# -- temp files after a hard kill ----------------------------------------------------------------------

def test_stale_temp_files_of_dead_writers_are_removed_and_never_reported(tmp_path, capsys):
    out = tmp_path / "o"
    out.mkdir()
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    stale = out / f".hello_00001.png.{int(dead.stdout)}.0123abcd.tmp"
    live = out / f".hello_00001.png.{os.getpid()}.0123abcd.tmp"
    young = out / f".hello_00002.png.{int(dead.stdout)}.4567abcd.tmp"
    other = out / ".notes.tmp"
    for p in (stale, live, young, other):
        p.write_bytes(b"half a file")
    old = time.time() - 3600
    for p in (stale, live, other):
        os.utime(p, (old, old))
    code, stdout, err = cli(capsys, "run", str(graph_file(tmp_path)), "--out", str(out))
    assert code == 0, err
    assert not stale.exists() and live.exists() and young.exists() and other.exists()
    assert ".tmp" not in stdout and sorted(p.name for p in out.glob("*.png")) == ["hello_00001.png"]


# -- concurrent runs into one folder --------------------------------------------------------------------

def test_eight_concurrent_runs_leave_eight_complete_files_each_reported_once(tmp_path):
    graph = graph_file(tmp_path)
    out = tmp_path / "same"
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    procs = [subprocess.Popen([sys.executable, "-m", "vdnodes", "run", str(graph), "--out", str(out)],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
             for _ in range(8)]
    reported = []
    for p in procs:
        stdout, stderr = p.communicate(timeout=300)
        assert p.returncode == 0, stderr
        reported += [line.split(": ", 1)[1] for line in stdout.splitlines() if line.startswith("files: ")]
    files = sorted(out.glob("*.png"))
    assert len(files) == 8 and len(reported) == 8 and len(set(reported)) == 8
    assert sorted(reported) == [str(f) for f in files]
    for f in files:
        with Image.open(f) as im:
            im.load()  # complete
    assert not [p for p in out.iterdir() if p.name.startswith(".")]


# -- a saved PNG re-runs wherever it is ---------------------------------------------------------------

def _pixels(path: Path) -> np.ndarray:
    with Image.open(path) as im:
        return np.asarray(im.convert("RGB"))


def test_a_saved_png_reruns_bit_for_bit_from_another_folder(tmp_path, capsys, monkeypatch):
    graph = graph_file(tmp_path, "dual_guided")
    code, _, err = cli(capsys, "run", str(graph), "--out", str(tmp_path / "out"), "--seed", "7")
    assert code == 0, err
    png = tmp_path / "out" / "dual_guided_00001.png"
    manifest = json.loads(read_png_text(png)[MANIFEST_KEY])
    record = manifest["inputs"]["files"]["image.path"]
    assert record["path"] == "inputs/yellow_striped_triangle_on_green.png"
    assert Path(record["resolved"]).is_absolute() and len(record["sha256"]) == 64
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    code, _, err = cli(capsys, "run", str(png), "--out", "again")
    assert code == 0, err
    assert np.array_equal(_pixels(elsewhere / "again" / "dual_guided_00001.png"), _pixels(png))
    # the graph's folder moved: the PNG's own folder is searched too
    moved = tmp_path / "moved"
    (tmp_path / "graph").rename(moved)
    shutil.copytree(moved / "inputs", tmp_path / "out" / "inputs")
    code, _, err = cli(capsys, "run", str(png), "--out", "third")
    assert code == 0, err
    assert np.array_equal(_pixels(elsewhere / "third" / "dual_guided_00001.png"), _pixels(png))


def test_a_missing_or_changed_input_names_the_file_its_digest_and_the_set(tmp_path, capsys):
    graph = graph_file(tmp_path, "dual_guided")
    code, _, err = cli(capsys, "run", str(graph), "--out", str(tmp_path / "out"))
    assert code == 0, err
    png = tmp_path / "out" / "dual_guided_00001.png"
    digest = json.loads(read_png_text(png)[MANIFEST_KEY])["inputs"]["files"]["image.path"]["sha256"]
    source = tmp_path / "graph" / "inputs" / "yellow_striped_triangle_on_green.png"
    shutil.copy(RED, source)  # changed content under the same name
    code, _, err = cli(capsys, "run", str(png), "--out", str(tmp_path / "o2"))
    assert code == 2 and digest in err and "--set image.path=PATH" in err, err
    source.unlink()
    code, _, err = cli(capsys, "validate", str(png))
    assert code == 2 and "inputs/yellow_striped_triangle_on_green.png" in err, err
    code, _, err = cli(capsys, "run", str(png), "--out", str(tmp_path / "o3"), "--set", f"image.path={RED}")
    assert code == 0, err


# -- checkpoints checked at validation, from their headers ----------------------------------------------

def test_weights_of_the_wrong_shape_are_refused_at_validation_naming_component_key_and_shapes(tmp_path, capsys):
    import torch
    from safetensors.torch import load_file

    from vdnodes.model import vd
    from vdnodes.model.checkpoints import load_safetensors, save_safetensors
    from vdnodes.model.configs import tiny_config

    model = vd.build(tiny_config(), vd.COMPONENTS)
    good = vd.save_vd(model, tmp_path / "tiny.safetensors")
    code, _, err = cli(capsys, "validate", str(graph_file(tmp_path, "text_to_image", model__source=str(good))))
    assert code == 0, err
    state = load_file(good)
    _, meta = load_safetensors(good)
    key = next(k for k in state if k.startswith("unet.") and k.endswith(".weight") and state[k].dim() == 4)
    state[key] = torch.zeros(state[key].shape[0] + 1, *state[key].shape[1:])
    bad = save_safetensors(state, tmp_path / "wrong.safetensors", {"components": meta["components"]},
                           config=meta["config"])
    code, _, err = cli(capsys, "validate", str(graph_file(tmp_path, "text_to_image", model__source=str(bad))))
    assert code == 2 and "node 'model'" in err and key in err and "component" in err, err
    assert f"{list(state[key].shape)} vs model" in err, err


def test_text_encoders_refuse_lone_surrogates_from_any_source():
    from vdnodes.core.errors import NodeInputError
    from vdnodes.nodes.encode import check_prompts, check_unicode

    for check in (check_unicode, check_prompts):
        with pytest.raises(NodeInputError, match=r"text item 1: .*surrogate"):
            check(["a red circle", "a blue \ud800 square"])
    check_unicode(["", "fine"])  # empty generated text is the encoder's business, not invalid
