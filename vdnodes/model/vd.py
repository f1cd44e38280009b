"""The Versatile Diffusion model container and flow-aware loading of real checkpoints.

What it is:
- ``VersatileDiffusion``: an ``nn.Module`` holding the optional components ``unet``
  (only the layer groups asked for), ``vae_image`` (kl-f8), ``vae_text`` (Optimus),
  ``clip_text`` and ``clip_image``. A component that was not asked for is ``None``;
  an unused half of a VAE is a ``NotLoaded`` placeholder that explains itself.
- ``components_for_flows``: which components a flow needs (architecture.md section 3,
  "flow-aware loading"): text->image needs the time MLP, the image data layers, the
  text context layers, CLIP text and the image VAE decoder - not the 1.4B text data
  layers, not Optimus.
- ``build``: a model from a ``VDConfig`` (random weights, or all on ``meta``).
- ``load_vd``: a model from a diffusers folder, the v1 full ``.pth``, the v2 UNet-only
  ``.pth`` (+ ``kl-f8.pth`` / ``optimus-vae.pth`` / a CLIP source), a lone kl-f8 or
  Optimus file, or our own safetensors. The model is built with its parameters on
  ``meta`` and only the tensors of the requested components are read and placed.
- ``save_vd``: our own safetensors format (config + component list in the metadata).

What it is not: no sampling and no flows themselves (``sampling.py``, the nodes);
no key-map tables (next to each module).
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from vdnodes.model import checkpoints as ck
from vdnodes.model.checkpoints import CheckpointError, Layout, StateDict
from vdnodes.model.clip import (
    CLIPImageContext, CLIPTextContext, clip_ignored_keys, clip_text_keymap, clip_vision_keymap,
)
from vdnodes.model.configs import VDConfig, config_from_diffusers, full_config
from vdnodes.model.diffusers_folder import DiffusersFolder, is_diffusers_folder
from vdnodes.model.keymap import KeyMap, remap
from vdnodes.model.optimus import OptimusVAE, optimus_ignored_keys, optimus_keymap
from vdnodes.model.unet import UNet
from vdnodes.model.unet_keys import DIFFUSERS_TEXT_UNET_IGNORE, diffusers_keymap, vd_v1_keymap, vd_v2_keymap
from vdnodes.model.vae import ImageVAE
from vdnodes.model.vae_keys import vae_keymap

PathLike = str | os.PathLike

# ---------------------------------------------------------------------------
# 1. Components and flows
# ---------------------------------------------------------------------------

COMPONENTS = (
    "unet.time", "unet.data.image", "unet.data.text", "unet.context.image", "unet.context.text",
    "vae_image.encoder", "vae_image.decoder", "vae_text.encoder", "vae_text.decoder",
    "clip_text", "clip_image",
)

# Our state-dict prefixes of each component (what is skipped when it is not loaded).
COMPONENT_PREFIXES: dict[str, tuple[str, ...]] = {
    "unet.time": ("unet.time_embed.",),
    "unet.data.image": ("unet.data.image.",),
    "unet.data.text": ("unet.data.text.",),
    "unet.context.image": ("unet.context.image.",),
    "unet.context.text": ("unet.context.text.",),
    "vae_image.encoder": ("vae_image.encoder.", "vae_image.quant_conv."),
    "vae_image.decoder": ("vae_image.decoder.", "vae_image.post_quant_conv."),
    "vae_text.encoder": ("vae_text.encoder.",),
    "vae_text.decoder": ("vae_text.decoder.",),
    "clip_text": ("clip_text.",),
    "clip_image": ("clip_image.",),
}

_T2I = {"unet.time", "unet.data.image", "unet.context.text", "clip_text", "vae_image.decoder"}
_I2I = {"unet.time", "unet.data.image", "unet.context.image", "clip_image", "vae_image.decoder"}
_I2T = {"unet.time", "unet.data.text", "unet.context.image", "clip_image", "vae_text.decoder"}
_T2T = {"unet.time", "unet.data.text", "unet.context.text", "clip_text", "vae_text.decoder"}
_DUAL = _T2I | _I2I

FLOWS: dict[str, frozenset[str]] = {
    "text_to_image": frozenset(_T2I),
    "image_variation": frozenset(_I2I),                          # incl. disentanglement (6.1)
    "image_variation_fidelity": frozenset(_I2I | {"vae_image.encoder"}),  # 6.2: starts from the input
    "image_to_text": frozenset(_I2T),
    "text_variation": frozenset(_T2T),
    "dual_guided": frozenset(_DUAL),                             # 6.4
    "blend": frozenset(_DUAL),                                   # 6.7 (images + optional text)
    "latent_editing": frozenset(_DUAL | _I2T | {"vae_text.encoder"}),  # 6.5 I2T2I
    "encode_image_latent": frozenset({"vae_image.encoder"}),
    "decode_image_latent": frozenset({"vae_image.decoder"}),
    "encode_text_latent": frozenset({"vae_text.encoder"}),
    "decode_text_latent": frozenset({"vae_text.decoder"}),
    "all": frozenset(COMPONENTS),
}


def check_components(components: Iterable[str]) -> frozenset[str]:
    """Validate component names; any UNet part implies ``unet.time`` (its only global layer)."""
    comps = frozenset(components)
    unknown = sorted(comps - set(COMPONENTS))
    if unknown:
        raise ValueError(f"unknown VD component(s) {unknown}; known: {list(COMPONENTS)}")
    if any(c.startswith("unet.") for c in comps):
        comps |= {"unet.time"}
    return comps


def components_for_flows(flows: str | Iterable[str]) -> frozenset[str]:
    """The components the given flows need together (e.g. ``["text_to_image"]``)."""
    names = [flows] if isinstance(flows, str) else list(flows)
    unknown = sorted(set(names) - set(FLOWS))
    if unknown:
        raise ValueError(f"unknown flow(s) {unknown}; known flows: {sorted(FLOWS)}")
    out: set[str] = set()
    for name in names:
        out |= FLOWS[name]
    return frozenset(out)


# ---------------------------------------------------------------------------
# 2. The container
# ---------------------------------------------------------------------------

class NotLoaded(nn.Module):
    """Stands in for a sub-module that was not loaded; using it raises a clear error."""

    def __init__(self, component: str) -> None:
        super().__init__()
        self.component = component

    def _message(self) -> str:
        return (f"VD component {self.component!r} was not loaded; load the model with a flow or "
                f"components that include it (e.g. components=[..., {self.component!r}])")

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        raise RuntimeError(self._message())

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_") or name in ("component", "training"):
            return super().__getattr__(name)
        raise AttributeError(self._message())


def _count(module: nn.Module | None) -> int:
    return 0 if module is None else sum(p.numel() for p in module.parameters())


class VersatileDiffusion(nn.Module):
    """VD's components, each optional: ``unet``, ``vae_image``, ``vae_text``, ``clip_text``, ``clip_image``.

    Build with ``build`` or ``load_vd``. ``components`` says what is present; a
    missing component is ``None`` (or ``NotLoaded`` for half a VAE).
    """

    def __init__(self, config: VDConfig, components: Iterable[str] = COMPONENTS,
                 clip_tokenizer: Any = None, optimus_tokenizers: tuple[Any, Any] | None = None) -> None:
        super().__init__()
        comps = check_components(components)
        self.config = config
        self.components = comps
        data = [m for m in ("image", "text") if f"unet.data.{m}" in comps]
        context = [m for m in ("image", "text") if f"unet.context.{m}" in comps]
        self.unet = UNet(config.unet, data=data, context=context) if "unet.time" in comps else None

        self.vae_image: ImageVAE | None = None
        if comps & {"vae_image.encoder", "vae_image.decoder"}:
            self.vae_image = ImageVAE(config.vae)
            if "vae_image.encoder" not in comps:
                self.vae_image.encoder = NotLoaded("vae_image.encoder")
                self.vae_image.quant_conv = NotLoaded("vae_image.encoder")
            if "vae_image.decoder" not in comps:
                self.vae_image.decoder = NotLoaded("vae_image.decoder")
                self.vae_image.post_quant_conv = NotLoaded("vae_image.decoder")

        self.vae_text: OptimusVAE | None = None
        if comps & {"vae_text.encoder", "vae_text.decoder"}:
            enc_tok, dec_tok = optimus_tokenizers or (None, None)
            self.vae_text = OptimusVAE(config.optimus, enc_tok, dec_tok)
            for half in ("encoder", "decoder"):
                if f"vae_text.{half}" not in comps:
                    setattr(self.vae_text, half, NotLoaded(f"vae_text.{half}"))

        self.clip_text = CLIPTextContext(config.clip_text, clip_tokenizer) if "clip_text" in comps else None
        self.clip_image = CLIPImageContext(config.clip_vision) if "clip_image" in comps else None

    def parameter_counts(self) -> dict[str, int]:
        """Parameters per present component, plus ``"total"`` (works on ``meta``)."""
        counts: dict[str, int] = {}
        if self.unet is not None:
            for key, n in self.unet.parameter_counts().items():
                if key != "total":
                    counts[f"unet.{key}"] = n
        if self.vae_image is not None:
            v = self.vae_image
            counts["vae_image.encoder"] = _count(v.encoder) + _count(v.quant_conv)
            counts["vae_image.decoder"] = _count(v.decoder) + _count(v.post_quant_conv)
        if self.vae_text is not None:
            counts["vae_text.encoder"] = _count(self.vae_text.encoder)
            counts["vae_text.decoder"] = _count(self.vae_text.decoder)  # lm_head is tied to wte
        counts["clip_text"] = _count(self.clip_text)
        counts["clip_image"] = _count(self.clip_image)
        counts = {k: v for k, v in counts.items() if k in self.components}
        counts["total"] = _count(self)
        return counts


# ---------------------------------------------------------------------------
# 3. Building
# ---------------------------------------------------------------------------

def build(config: VDConfig, components: Iterable[str] = COMPONENTS, *,
          device: torch.device | str = "cpu", dtype: torch.dtype = torch.float32,
          empty: bool = False, **kwargs: Any) -> VersatileDiffusion:
    """A ``VersatileDiffusion`` with the given components.

    ``device="meta"``: no memory at all (shapes and counts only). ``empty=True``:
    parameters on ``meta``, buffers real - the state ``load_vd`` fills by assignment.
    Otherwise randomly initialised weights on ``device``.
    """
    if str(device) == "meta":
        with torch.device("meta"):
            return VersatileDiffusion(config, components, **kwargs).to(dtype)
    if empty:
        with ck.params_on_meta():
            model = VersatileDiffusion(config, components, **kwargs)
        return model.to(dtype)  # meta params only change dtype; load_vd moves the rest
    return VersatileDiffusion(config, components, **kwargs).to(device=device, dtype=dtype)


def flow_report(flows: str | Iterable[str], config: VDConfig | None = None,
                counts: Mapping[str, int] | None = None) -> dict[str, Any]:
    """Weights the flows need vs the whole model, in parameters.

    ``counts``: a full model's ``parameter_counts()`` (else it is built on ``meta``).
    """
    if counts is None:
        counts = build(config or full_config(), COMPONENTS, device="meta").parameter_counts()
    needed = components_for_flows(flows)
    n = sum(counts[c] for c in needed)
    return {"components": sorted(needed), "needed": n, "total": counts["total"],
            "fraction": n / counts["total"], "per_component": {c: counts[c] for c in sorted(needed)}}


# ---------------------------------------------------------------------------
# 4. Loading: every layout becomes (state, key map, ignored source keys)
# ---------------------------------------------------------------------------

class _CombinedState(Mapping[str, torch.Tensor]):
    """Several state dicts seen as one, each under a source prefix (lazy)."""

    def __init__(self, parts: list[tuple[str, StateDict]]) -> None:
        self._where: dict[str, tuple[StateDict, str]] = {}
        for prefix, state in parts:
            for key in state.keys():
                name = prefix + key
                if name in self._where:
                    raise CheckpointError(f"two sources both provide {name!r}")
                self._where[name] = (state, key)

    def __getitem__(self, key: str) -> torch.Tensor:
        state, inner = self._where[key]
        return state[inner]

    def locate(self, key: str) -> tuple[StateDict, str]:
        return self._where[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._where)

    def __len__(self) -> int:
        return len(self._where)


def _under(keymap: KeyMap, dst: str, src: str = "") -> KeyMap:
    """Prefix both sides of a key map: source with ``src``, ours with ``dst``."""
    return {src + k: dst + v for k, v in keymap.items()}


# Buffers the LDM/VD wrappers keep at the top level; we recompute the schedule.
WRAPPER_BUFFERS = (
    "betas", "alphas_cumprod", "alphas_cumprod_prev", "sqrt_alphas_cumprod",
    "sqrt_one_minus_alphas_cumprod", "log_one_minus_alphas_cumprod", "sqrt_recip_alphas_cumprod",
    "sqrt_recipm1_alphas_cumprod", "posterior_variance", "posterior_log_variance_clipped",
    "posterior_mean_coef1", "posterior_mean_coef2", "lvlb_weights", "logvar", "scale_factor",
    "model_ema.",
)

# Where each source is mounted in the one namespace the key maps read. Everything that
# is not a UNet uses the v1 full file's names, so separate files are mounted there:
# kl-f8 under "autokl.", Optimus under "optimus.", CLIP (a CLIPModel, or diffusers'
# text_encoder + image_encoder) under "clip.model.".
MOUNTS = {
    "image_unet": "image_unet.", "text_unet": "text_unet.", "vae": "vae.",
    "text_encoder": "clip.model.", "image_encoder": "clip.model.",
    "kl_f8": "autokl.", "optimus": "optimus.", "clip": "clip.model.",
}


def source_keymap(layout: Layout, config: VDConfig) -> tuple[KeyMap, tuple[str, ...]]:
    """(key map, ignored source prefixes) from the mounted sources of ``layout`` to our names.

    The shared maps for separately mounted VAE/Optimus/CLIP files are always included,
    so any layout (even a partial file of ours) can be completed with extra sources.
    """
    keymap: KeyMap = {"": ""} if layout is Layout.VDNODES else {}  # ours: names are already ours
    keymap.update(_under(vae_keymap("vd-v1", config.vae), "vae_image."))
    keymap.update(_under(optimus_keymap("vd-v1"), "vae_text."))
    keymap.update(_under(clip_text_keymap("vd-v1"), "clip_text."))
    keymap.update(_under(clip_vision_keymap("vd-v1"), "clip_image."))
    ignore = WRAPPER_BUFFERS + clip_ignored_keys("vd-v1") + optimus_ignored_keys(config.optimus, "vd-v1")
    # Newer BERT code saves these index buffers; Optimus' old BERT had none. We rebuild them.
    ignore += ("optimus.encoder.embeddings.position_ids", "optimus.encoder.embeddings.token_type_ids")
    if layout is Layout.VD_V1_FULL:
        keymap.update(_under(vd_v1_keymap(config.unet), "unet."))
    elif layout is Layout.VD_V2:
        keymap.update(_under(vd_v2_keymap(config.unet), "unet."))
        complete, complete_ignore = _v2_model_keymap(keymap, ignore)
        keymap.update(complete)
        ignore += complete_ignore
    elif layout is Layout.DIFFUSERS:
        keymap.update(_under(diffusers_keymap("image", config.unet, prefix=MOUNTS["image_unet"]), "unet."))
        keymap.update(_under(diffusers_keymap("text", config.unet, prefix=MOUNTS["text_unet"]), "unet."))
        keymap.update(_under(vae_keymap("diffusers", config.vae, prefix=MOUNTS["vae"]), "vae_image."))
        ignore += tuple(MOUNTS["text_unet"] + k for k in DIFFUSERS_TEXT_UNET_IGNORE)
    return keymap, ignore


# A complete ``VD_v2_0.state_dict()`` (SHI-Labs/Versatile-Diffusion lib/model_zoo/vd.py at HEAD,
# lines 73-75: ``self.vae``, ``self.ctx``, ``self.diffuser`` ModuleDicts) holds kl-f8 under
# ``vae.image.``, Optimus under ``vae.text.`` and a whole CLIPModel in each of ``ctx.text.model.``
# and ``ctx.image.model.`` (lib/model_zoo/clip.py lines 31-74): text weights come from the first,
# vision weights from the second, and each one's other half is a duplicate we skip.
V2_MODEL_MOUNTS = {"autokl.": "vae.image.", "optimus.": "vae.text."}
V2_CLIP_HALVES = {"ctx.text.model.": ("text_model.", "text_projection."),
                  "ctx.image.model.": ("vision_model.", "visual_projection.")}


def _v2_model_keymap(keymap: KeyMap, ignore: tuple[str, ...]) -> tuple[KeyMap, tuple[str, ...]]:
    """The shared VAE/Optimus/CLIP maps re-based onto a complete v2 model's prefixes."""
    clip = MOUNTS["clip"]
    out: KeyMap = {}
    extra: list[str] = []
    for src, dst in keymap.items():
        for old, new in V2_MODEL_MOUNTS.items():
            if src.startswith(old):
                out[new + src[len(old):]] = dst
        for mount, halves in V2_CLIP_HALVES.items():
            if src.startswith(tuple(clip + h for h in halves)):
                out[mount + src[len(clip):]] = dst
    for key in ignore:
        for old, new in V2_MODEL_MOUNTS.items():
            if key.startswith(old):
                extra.append(new + key[len(old):])
        if key.startswith(clip):
            extra += [mount + key[len(clip):] for mount in V2_CLIP_HALVES]
    for mount, halves in V2_CLIP_HALVES.items():
        other = next(h for m, h in V2_CLIP_HALVES.items() if m != mount)
        extra += [mount + h for h in other]  # the duplicate half
    return out, tuple(extra)


# VD's training schedule (section 5); diffusers writes it into scheduler/scheduler_config.json.
VD_SCHEDULE = {"num_train_timesteps": 1000, "beta_start": 0.00085, "beta_end": 0.012,
               "beta_schedule": "scaled_linear", "prediction_type": "epsilon"}


def check_scheduler_config(cfg: Mapping[str, Any], where: str) -> None:
    """A diffusers scheduler config must describe VD's schedule: our samplers assume it."""
    wrong = {k: cfg[k] for k, v in VD_SCHEDULE.items()
             if k in cfg and (cfg[k] != v if isinstance(v, str) else abs(float(cfg[k]) - v) > 1e-9)}
    if wrong:
        raise CheckpointError(f"{where}: scheduler settings {wrong} differ from Versatile Diffusion's "
                              f"{VD_SCHEDULE}; these weights were not trained for this sampler")


def _clip_parts(source: PathLike) -> list[tuple[str, StateDict]]:
    """CLIP weights from a file (an HF ``CLIPModel``), a diffusers VD folder or an HF model folder."""
    p = Path(source)
    if is_diffusers_folder(p):
        folder = DiffusersFolder.open(p)
        return [(MOUNTS[n], folder.state(n)) for n in ("text_encoder", "image_encoder") if folder.has(n)]
    if p.is_dir():
        for name in ("model.safetensors", "pytorch_model.bin"):
            if (p / name).is_file():
                return [(MOUNTS["clip"], ck.read_state_dict(p / name))]
        raise CheckpointError(f"CLIP folder {str(p)!r} has neither model.safetensors nor pytorch_model.bin")
    return [(MOUNTS["clip"], ck.read_state_dict(p))]


def _available(parts: list[tuple[str, StateDict]], keymap: KeyMap, ignore: tuple[str, ...]) -> set[str]:
    """Components for which the sources hold at least one tensor."""
    names = {}
    for prefix, state in parts:
        names.update({prefix + k: prefix + k for k in state.keys()})
    renamed, _ = remap(names, keymap, ignore=ignore)
    return {c for c, prefixes in COMPONENT_PREFIXES.items() if any(k.startswith(prefixes) for k in renamed)}


def _open_main(p: Path, config: VDConfig | None) -> tuple[Layout, VDConfig, list[tuple[str, StateDict]], Any]:
    """Layout, config, mounted sources and CLIP tokenizer (or None) of the main path."""
    from vdnodes.model.tokenizers import load_tokenizer

    if is_diffusers_folder(p):
        folder = DiffusersFolder.open(p)
        names = ("image_unet", "text_unet", "vae", "text_encoder", "image_encoder")
        try:
            config = config_from_diffusers({n: folder.config(n) for n in names if folder.has(n)}, base=config)
        except CheckpointError:
            raise
        except ValueError as e:
            raise CheckpointError(f"diffusers folder {str(p)!r}: {e}") from None
        if folder.has("scheduler"):
            check_scheduler_config(folder.config("scheduler", "scheduler_config.json"), str(p))
        tokenizer = load_tokenizer(folder.folder("tokenizer")) if folder.has("tokenizer") else None
        return Layout.DIFFUSERS, config, [(MOUNTS[n], folder.state(n)) for n in names if folder.has(n)], tokenizer
    if p.is_dir():
        raise CheckpointError(f"{str(p)!r} is a folder without model_index.json; expected a diffusers "
                              "pipeline folder or a checkpoint file")
    state = ck.read_state_dict(p)
    meta = dict(getattr(state, "metadata", {}) or {})
    layout = ck.detect_layout(state.keys(), meta)
    if layout is Layout.VDNODES:  # our files carry their config
        if "config" not in meta:
            raise CheckpointError(f"{str(p)!r} is a vdnodes file without a config in its metadata")
        try:
            config = VDConfig.from_dict(json.loads(meta["config"]))
        except (json.JSONDecodeError, ValueError, TypeError) as e:
            raise CheckpointError(f"{str(p)!r} has an unusable config in its metadata ({e})") from None
    mount = {Layout.KL_F8: MOUNTS["kl_f8"], Layout.OPTIMUS: MOUNTS["optimus"]}.get(layout, "")
    return layout, config or full_config(), [(mount, state)], None


def load_vd(
    path: PathLike,
    *,
    flows: str | Iterable[str] | None = None,
    components: Iterable[str] | None = None,
    device: torch.device | str = "cpu",
    dtype: torch.dtype = torch.float32,
    config: VDConfig | None = None,
    image_vae: PathLike | None = None,
    text_vae: PathLike | None = None,
    clip: PathLike | None = None,
    optimus_vocab: PathLike | None = None,
    shapes_only: bool = False,
) -> VersatileDiffusion:
    """Load VD from ``path``: a diffusers folder, a v1/v2 ``.pth``, kl-f8/Optimus alone, or ours.

    ``flows`` or ``components`` choose what to load (default: everything the sources
    hold). ``image_vae`` (``kl-f8.pth``), ``text_vae`` (``optimus-vae.pth``) and
    ``clip`` (a CLIP ViT-L/14 file or folder, or a diffusers VD folder) add what a
    file lacks: the v2 ``.pth`` holds only the UNets, diffusers has no Optimus.
    ``config`` sets the sizes of files that carry none (default: full-size VD).
    ``optimus_vocab``: folder with VD's bundled Optimus vocabulary files.
    ``shapes_only``: check layout, keys and shapes from the files' headers without reading
    weights (the model comes back on ``meta``); a ``CheckpointError`` names what does not fit.
    """
    from vdnodes.model.tokenizers import load_optimus_tokenizers

    p = Path(path)
    if flows is not None and components is not None:
        raise ValueError("pass either flows or components, not both")
    wanted = (components_for_flows(flows) if flows is not None
              else check_components(components) if components is not None else None)

    # 1. The main path: its layout, config and sources.
    layout, config, parts, clip_tok = _open_main(p, config)
    keymap, ignore = source_keymap(layout, config)

    # 2. Extra sources, mounted where the shared key maps look for them.
    if image_vae is not None:
        parts.append((MOUNTS["kl_f8"], ck.read_state_dict(image_vae)))
    if text_vae is not None:
        parts.append((MOUNTS["optimus"], ck.read_state_dict(text_vae)))
    if clip is not None:
        parts.extend(_clip_parts(clip))
    try:
        state = _CombinedState(parts)
    except CheckpointError as e:
        raise CheckpointError(f"{e}: a component was given twice (e.g. image_vae= with a file that "
                              "already holds the image VAE)") from None

    # 3. Decide the components: what was asked, checked against what the sources hold.
    available = _available(parts, keymap, ignore)
    if wanted is None:
        wanted = check_components(available)
    lacking = sorted(wanted - available)
    if lacking:
        hints = {"vae_image": "image_vae=<kl-f8.pth>", "vae_text": "text_vae=<optimus-vae.pth>",
                 "clip": "clip=<CLIP ViT-L/14 file/folder or a diffusers VD folder>"}
        need = sorted({h for c in lacking for k, h in hints.items() if c.startswith(k)})
        raise CheckpointError(
            f"{str(p)!r} ({layout.value}) has no weights for {lacking}"
            + (f"; pass {', '.join(need)}" if need else "") + f". It holds: {sorted(available) or 'nothing'}")

    # 4. Build with parameters on meta, then read and place only what is wanted.
    opt_tok = load_optimus_tokenizers(optimus_vocab) if optimus_vocab is not None and not shapes_only else None
    if shapes_only:
        state, device = ck.ShapesOnly(state), "meta"
    model = build(config, wanted, device=device, dtype=dtype, empty=True,
                  clip_tokenizer=clip_tok, optimus_tokenizers=opt_tok)
    skip = tuple(pre for c, prefixes in COMPONENT_PREFIXES.items() if c not in wanted for pre in prefixes)
    try:
        ck.load_into(model, state, keymap, ignore=ignore, skip=skip, device=device,
                     what=f"{layout.value} checkpoint {str(p)!r}")
    except ck.KeyMismatchError as e:
        if not e.mismatched:
            raise
        by_component = sorted({_component_of(ours) for ours in e.mismatched_ours})
        raise ck.KeyMismatchError(f"{e} (component{'s' if len(by_component) > 1 else ''}: "
                                  f"{', '.join(by_component)})", e.missing, e.unexpected, e.mismatched) from None
    if shapes_only:
        return model
    left = ck.meta_names(model)
    if left:
        raise CheckpointError(f"after loading, {len(left)} tensors were never filled, e.g. {left[:5]}")
    return model.to(device).eval()  # parameters are in place already; this moves the buffers


def _component_of(ours: str) -> str:
    """The component (``unet_image``, ``vae_text``...) that our parameter name belongs to."""
    return next((c for c, prefixes in COMPONENT_PREFIXES.items() if ours.startswith(prefixes)), "other")


def save_vd(model: VersatileDiffusion, path: PathLike, metadata: Mapping[str, Any] | None = None) -> Path:
    """Save in our format: safetensors + ``config`` and ``components`` in the metadata."""
    meta = {"components": sorted(model.components), **(metadata or {})}
    return ck.save_safetensors(model, path, meta, config=model.config.to_dict())
