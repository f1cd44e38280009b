"""vd-nano quality measurement: scoring rules, thresholds, grids, docs section and CLI errors.

The measurement itself runs on the shortened training's model in test_train.py, and the
shipped model's semantic check is test_shipped.py; here the scoring is checked on cases
whose answers are known (ground-truth renders and captions).
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from vdnodes.nano import quality as q
from vdnodes.nano import scenes as sc
from vdnodes.nano.grids import flow_grids, write_grids


def _scenes(n=12, seed=3):
    rng = np.random.default_rng(seed)
    return [sc.sample_scene(rng) for _ in range(n)]


def _renders(scenes):
    return torch.from_numpy(np.stack([sc.render(s, 32).transpose(2, 0, 1) for s in scenes]) / 255.0).float()


def test_ground_truth_outputs_score_full_marks():
    scenes = _scenes()
    images = _renders(scenes)
    rates = q.score("t2i", q.Cases(scenes, images=images))
    assert rates["t2i_color"] == rates["t2i_shape"] == rates["t2i_background"] == 1.0
    rates = q.score("i2t", q.Cases(scenes, texts=[s.caption() for s in scenes]))
    assert rates["i2t_color_shape"] == rates["i2t_all"] == 1.0
    rates = q.score("t2t", q.Cases(scenes, texts=[s.caption(template=2) for s in scenes]))
    assert rates["t2t_nouns"] == 1.0


def test_wrong_outputs_score_zero():
    scenes = _scenes()
    shifted = scenes[1:] + scenes[:1]  # every image shows another scene
    same = [a.color == b.color and a.shape == b.shape for a, b in zip(scenes, shifted)]
    rates = q.score("i2i", q.Cases(scenes, images=_renders(shifted)))
    assert rates["i2i_color_shape"] == pytest.approx(np.mean(same))
    rates = q.score("t2t", q.Cases(scenes, texts=["a black background"] * len(scenes)))
    assert rates["t2t_nouns"] == 0.0


def test_dual_counts_the_texts_colour_and_the_images_shape():
    scenes = [sc.Scene("triangle", "yellow", "green"), sc.Scene("circle", "red", "blue")]
    recolored = [sc.Scene("triangle", "red", "green"), sc.Scene("circle", "red", "blue")]
    cases = q.Cases(scenes, images=_renders(recolored), extra={"colors": ["red", "white"]})
    rates = q.score("dual", cases)
    assert rates["dual_text_color"] == 0.5 and rates["dual_image_shape"] == 1.0
    assert rates["dual_text_color_image_shape"] == 0.5


def test_thresholds_and_orderings_are_checked_both_ways():
    rates = {"t2i_color": 0.95, "t2i_shape": 0.5, "disentangle_semantic_shape": 0.6,
             "disentangle_style_shape": 0.4, "disentangle_style_texture": 0.2,
             "disentangle_semantic_texture": 0.3}
    rows = {m: met for m, _, met in q.check_thresholds(rates)}
    assert rows["t2i_color"] and not rows["t2i_shape"]
    assert rows["disentangle_semantic_shape > disentangle_style_shape"]
    assert not rows["disentangle_style_texture > disentangle_semantic_texture"]
    table = q.markdown_table({**rates, "seconds_t2i": 3.0}, 200, q.Settings())
    assert "| t2i_shape | 50.0% | >= 80% | **no** |" in table and "Time: 3 s" in table


def test_docs_section_is_replaced_between_markers(tmp_path):
    doc = tmp_path / "nano.md"
    doc.write_text(f"# title\n{q.DOCS_BEGIN}\nold\n{q.DOCS_END}\nafter\n")
    q.update_docs(doc, "new table")
    assert doc.read_text() == f"# title\n{q.DOCS_BEGIN}\nnew table\n{q.DOCS_END}\nafter\n"
    (tmp_path / "plain.md").write_text("no markers")
    with pytest.raises(ValueError, match="eval-nano"):
        q.update_docs(tmp_path / "plain.md", "x")


def test_grids_show_inputs_and_outputs(tmp_path):
    scenes = _scenes(4)
    images = _renders(scenes)
    keep = {"t2i": q.Cases(scenes, images=images, extra={"prompts": [s.caption() for s in scenes]}),
            "i2t": q.Cases(scenes, texts=[s.caption() for s in scenes], extra={"sources": images})}
    grids = flow_grids(keep)
    assert set(grids) == {"t2i", "i2t"}
    t2i = np.asarray(grids["t2i"])
    assert t2i.shape[1] >= 4 * 128  # four 32 px scenes scaled 4x side by side
    paths = write_grids(keep, tmp_path)
    assert sorted(p.name for p in paths) == ["nano_i2t.png", "nano_t2i.png"]


def test_eval_nano_rejects_bad_options_with_exit_2(capsys, tmp_path):
    assert q.main(["--flows", "t2i,nope"]) == 2
    assert "unknown flow" in capsys.readouterr().err
    assert q.main(["--weights", str(tmp_path / "missing.safetensors")]) == 2
    assert "train-nano" in capsys.readouterr().err


def test_eval_nano_refuses_an_unusable_docs_file_before_measuring(capsys, tmp_path, monkeypatch):
    # A --docs typo used to surface as a traceback after minutes of measuring, the numbers lost.
    import vdnodes.nano.weights as weights

    monkeypatch.setattr(weights, "load_nano", lambda **_: pytest.fail("measured before checking --docs"))
    assert q.main(["--docs", str(tmp_path / "missing.md")]) == 2
    err = capsys.readouterr().err
    assert "cannot read the docs file" in err and "missing.md" in err and "Traceback" not in err
    (tmp_path / "plain.md").write_text("no markers")
    assert q.main(["--docs", str(tmp_path / "plain.md")]) == 2
    assert "eval-nano:begin" in capsys.readouterr().err


def test_eval_nano_samples_with_the_sampler_it_is_given(tmp_path, capsys):
    out = tmp_path / "rates.json"
    assert q.main(["--n", "2", "--flows", "i2i", "--steps", "2", "--sampler", "dpmpp_2m", "--out", str(out)]) == 0
    record = json.loads(out.read_text())
    assert record["settings"]["sampler"] == "dpmpp_2m" and 0.0 <= record["rates"]["i2i_color"] <= 1.0
    assert "DPMPP_2M 2 steps" in capsys.readouterr().out
    with pytest.raises(SystemExit) as exit_:
        q.main(["--sampler", "euler"])
    assert exit_.value.code == 2 and "invalid choice: 'euler'" in capsys.readouterr().err


def test_clip_probe_variants_change_only_the_probed_attribute():
    for scene in _scenes(30, seed=8):
        for attribute in q.PROBED:
            options = q._variants(scene, attribute)
            values = [getattr(o, attribute) for o in options]
            assert getattr(scene, attribute) in values and len(set(values)) == len(values) >= 3
            for o in options:  # valid scenes (they check themselves) differing in that attribute only
                assert all(getattr(o, a) == getattr(scene, a) for a in q.PROBED if a != attribute)


def test_clip_probe_scores_picked_values():
    scenes = _scenes(4)
    picked = {a: [getattr(s, a) for s in scenes] for a in q.PROBED}
    picked["shape"] = [scenes[0].shape] + [next(x for x in sc.SHAPES if x != s.shape) for s in scenes[1:]]
    shift = {a: [0.1, 0.2, 0.3, 0.4] for a in q.PROBED}
    rates = q.score("clip", q.Cases(scenes, extra={"picked": picked, "token_shift": shift}))
    assert rates["clip_shape"] == 0.25 and rates["clip_color"] == rates["clip_texture"] == 1.0
    assert rates["clip_tokens_shape"] == pytest.approx(0.25)
    table = q.markdown_table(rates, 4, q.Settings())
    assert "| clip_tokens_shape | 0.25 |" in table and "| clip_shape | 25.0% |" in table


def test_vae_flow_scores_reconstructions_with_the_checker():
    scenes = q._scenes(6, 3)
    good = q._render(scenes, torch.device("cpu"))
    rates = q.score("vae", q.Cases(scenes, images=good))
    assert rates == {"vae_color": 1.0, "vae_shape": 1.0, "vae_texture": 1.0}
    blank = torch.zeros_like(good)  # black images: colour and shape lost
    assert q.score("vae", q.Cases(scenes, images=blank))["vae_shape"] < 0.5


def test_eval_nano_samples_with_the_example_graphs_settings():
    # eval-nano's numbers are what a user of graphs/ gets only while its settings are the graphs'.
    import json
    from pathlib import Path

    from vdnodes.nodes import build_registry

    denoise = build_registry().get("vd.denoise")
    defaults = {name: p.default for name, p in denoise.params.items()}
    settings = q.Settings()
    graphs = Path(__file__).resolve().parents[2] / "graphs"
    seen = 0
    for path in sorted(graphs.glob("*.json")):
        for node_id, node in json.loads(path.read_text())["nodes"].items():
            if node["type"] != "vd.denoise":
                continue
            params = {**defaults, **node.get("params", {})}
            where = f"{path.name}:{node_id}"
            assert params["steps"] == settings.steps, where
            if params["output"] == "text":  # i2t, t2t and I2T2I's caption
                expected = settings.text_guidance
            elif path.name in ("image_variation.json", "sweep_photos.json"):  # the sweep runs image variation
                expected = settings.variation_guidance
            else:
                expected = settings.guidance
            assert params["guidance"] == expected, where
            assert params["sampler"] == settings.sampler, where
            seen += 1
    assert seen >= 10
    texts = [n for path in sorted(graphs.glob("*.json")) for n in json.loads(path.read_text())["nodes"].values()
             if n["type"] == "vd.denoise" and n.get("params", {}).get("output") == "text"]
    assert len(texts) >= 3  # image_to_text, text_variation, i2t2i_edit's caption
    nodes = lambda name: json.loads((graphs / name).read_text())["nodes"]  # noqa: E731
    assert nodes("dual_guided.json")["sample"]["params"]["mix"] == settings.dual_mix
    i2t2i = nodes("i2t2i_edit.json")
    assert i2t2i["sample"]["params"]["mix"] == settings.edit_mix
    assert i2t2i["layout"]["params"]["rank"] == settings.edit_rank
    focus = nodes("disentangle.json")
    assert focus["semantic_focus"]["params"]["focus"] == settings.semantic_focus
    assert focus["style_focus"]["params"]["focus"] == settings.style_focus
    assert settings.variation_tokens == "all"  # the graphs' image variation reads every token
    decoding = {name: [n["params"].get("mode", "sample") for n in nodes(name).values() if n["type"] == "vd.decode_text"]
                for name in ("image_to_text.json", "text_variation.json", "i2t2i_edit.json")}
    assert decoding == {"image_to_text.json": [settings.caption_decoding],
                        "text_variation.json": [settings.caption_decoding],
                        "i2t2i_edit.json": [settings.caption_decoding]}
    variation = nodes("image_variation.json")  # eval-nano's i2i colour-matches as the graph does
    matching = [n for n in variation.values() if n["type"] == "image.match_colors"]
    assert len(matching) == 1 and matching[0]["params"]["strength"] == settings.variation_match_colors
    assert matching[0]["inputs"]["reference"][0] == "image"  # matched to the input picture
