"""vdnodes run --max-memory / --compile / --channels-last: bad values are exit 2; a tiling run works."""

from __future__ import annotations

from pathlib import Path

from PIL import Image

from tests.cli.test_cli import ROOT, assert_user_error, vdnodes

GRAPH = ROOT / "graphs" / "text_to_image.json"


def test_max_memory_must_be_positive(tmp_path):
    assert_user_error(vdnodes("run", str(GRAPH), "--max-memory", "0", "--out", str(tmp_path)), "--max-memory")


def test_a_run_under_a_tiny_memory_budget_gives_the_same_image(tmp_path):
    common = ["--set", "model.source=tiny", "--set", "sample.steps=2", "--output", "image"]
    plain = vdnodes("run", str(GRAPH), *common, "--out", str(tmp_path / "a"))
    tight = vdnodes("run", str(GRAPH), *common, "--max-memory", "0.000001", "--channels-last", "on",
                    "--out", str(tmp_path / "b"))
    assert plain.returncode == 0 and tight.returncode == 0, plain.stderr + tight.stderr
    (a,), (b,) = sorted(Path(tmp_path / "a").glob("*.png")), sorted(Path(tmp_path / "b").glob("*.png"))
    with Image.open(a) as ia, Image.open(b) as ib:
        assert ia.size == ib.size
        diff = max(abs(x - y) for x, y in zip(ia.tobytes(), ib.tobytes()))
    assert diff <= 1  # one tile (the tiny model's latent is smaller than a tile), channels-last rounding
