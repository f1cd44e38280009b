"""Loading VD once and sharing it: the model manager, the ``VDModel`` handle, ``vd.load_model``.

The value that flows through a ``VDModel`` socket is a small ``VDHandle``: where
the weights come from, dtype and device. Nodes ask the handle for the
components they use (``handle.unet("image", {"text"})``, ``handle.clip_text()``),
and the manager loads exactly those, once per (source, dtype, device), merging
them into one shared ``VersatileDiffusion``. That is flow-aware loading: a
text->image graph never reads the text data layers or the Optimus decoder.
"""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from vdnodes.core.errors import NodeInputError
from vdnodes.core.provenance import resolve_user_path
from vdnodes.core.graph import Graph
from vdnodes.core.node import Out, Param, node
from vdnodes.core.registry import Registry

DEFAULT_SOURCE = "nano"
BUILTIN_SOURCES = ("nano", "tiny")
SOURCES_DOC = ("'nano' (the embedded vd-nano, the default), 'tiny' (random weights, for tests), or a path: "
               "a diffusers VD folder, an original VD .pth, or a vdnodes .safetensors file")
HASH_FULL_LIMIT = 256 << 20  # files above this get a head/tail fingerprint instead of a full hash


@dataclass(frozen=True)
class ModelSpec:
    """Everything that identifies one loaded model."""

    source: str  # "nano", "tiny" or an absolute path
    dtype: str  # "float32" | "float16" | "bfloat16"
    device: str
    seed: int = 0  # random-weight sources only
    image_vae: str = ""
    text_vae: str = ""
    clip: str = ""
    optimus_vocab: str = ""
    offload_gb: float = 0.0  # > 0: weights stay in CPU memory, at most this many GB on the device

    @property
    def storage_device(self) -> str:
        """Where weights are loaded: CPU memory when offloading, else the device itself."""
        return "cpu" if self.offload_gb > 0 else self.device


def file_digest(path: Path) -> str:
    """sha256 of a file, or of its size + first/last 8 MiB for very large files (marked so)."""
    h = hashlib.sha256()
    size = path.stat().st_size
    with open(path, "rb") as f:
        if size <= HASH_FULL_LIMIT:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                h.update(chunk)
            return "sha256:" + h.hexdigest()
        h.update(str(size).encode())
        h.update(f.read(8 << 20))
        f.seek(size - (8 << 20))
        h.update(f.read())
        return "sha256-head-tail:" + h.hexdigest()


def source_files(source: str) -> list[Path]:
    p = Path(source)
    if p.is_dir():
        return sorted(q for q in p.rglob("*") if q.suffix in (".safetensors", ".bin", ".pth", ".pt", ".ckpt"))
    return [p]


def _source_path(source: str) -> str:
    """The file behind a source ('nano' is the shipped weights file)."""
    if source == "nano":
        from vdnodes.nano.shipped import NANO_WEIGHTS

        return str(NANO_WEIGHTS)
    return source


def _source_name(source: str) -> str:
    """How a source is named in run manifests: built-in names as they are, paths by file name."""
    return source if source in BUILTIN_SOURCES else Path(source).name


def _is_nano_file(source: str) -> bool:
    from vdnodes.nano.weights import is_nano_file

    return is_nano_file(source)


@dataclass(frozen=True)
class ModelGroup:
    """UNet layers for a new modality, added by a plugin (``PluginAPI.add_context_layers``).

    ``component`` is ``"unet.context.<modality>"`` (layers that read a new conditioning
    modality) or ``"unet.data.<modality>"`` (layers that generate a new modality).
    ``build(config)`` returns the ``ContextGroup`` / ``DataGroup`` for a model of that
    ``VDConfig`` with its trained weights loaded; the manager moves it to the model's device
    and dtype and attaches it to the loaded UNet the first time a node needs it.
    ``presets`` names the model configs it was trained for (empty: any).
    """

    component: str
    build: Callable[[Any], Any]
    doc: str = ""
    presets: tuple[str, ...] = ()

    @property
    def modality(self) -> str:
        return self.component.rsplit(".", 1)[1]


@dataclass
class LoadedModel:
    model: Any  # vdnodes.model.vd.VersatileDiffusion
    components: set[str] = field(default_factory=set)
    offload: Any = None  # vdnodes.model.offload.GroupOffload when the spec offloads


class ModelManager:
    """Loads each model once per spec and each component once; thread-safe."""

    def __init__(self) -> None:
        self._models: dict[ModelSpec, LoadedModel] = {}
        self._digests: dict[tuple[str, int, int], str] = {}
        self._lock = threading.RLock()

    def ensure(self, spec: ModelSpec, components: set[str], groups: Mapping[str, ModelGroup] | None = None) -> Any:
        """The shared ``VersatileDiffusion`` of ``spec`` with at least ``components`` loaded.

        Components outside VD's own (``vd.COMPONENTS``) come from ``groups``: plugin layer
        groups, built once per model and attached to its UNet.
        """
        from vdnodes.model.vd import COMPONENTS, check_components

        extra = {c for c in components if c not in COMPONENTS}
        groups = groups or {}
        unknown = sorted(c for c in extra if c not in groups)
        if unknown:
            raise ValueError(f"unknown model component(s) {unknown}: no plugin adds them "
                             f"(plugin layer groups: {sorted(groups) or 'none'})")
        wanted = set(check_components((set(components) - extra) | ({"unet.time"} if extra else set())))
        with self._lock:
            loaded = self._models.get(spec)
            missing = wanted - (loaded.components if loaded else set())
            if missing:
                part = self._load(spec, missing)
                new = set(part.components) - (loaded.components if loaded else set())
                if loaded is None:
                    loaded = self._models[spec] = LoadedModel(part, set(part.components))
                else:
                    _merge(loaded.model, part)
                    loaded.components |= set(part.components)
                _accelerate(loaded.model, new, spec.device)
            for component in sorted(extra - loaded.components):
                _attach_group(loaded.model, groups[component], spec)
                loaded.components.add(component)
            if spec.offload_gb > 0:
                self._use(spec, loaded, wanted | extra)
            return loaded.model

    @staticmethod
    def _use(spec: ModelSpec, loaded: LoadedModel, components: set[str]) -> None:
        """Offload: make ``components`` resident on the device, evicting others to fit the budget."""
        from vdnodes.model.offload import GroupOffload

        if loaded.offload is None:
            loaded.offload = GroupOffload(loaded.model, spec.device, int(spec.offload_gb * 1e9))
        loaded.offload.use(sorted(components))

    def offload_report(self, spec: ModelSpec) -> dict[str, Any] | None:
        """Resident components and move counts of an offloading model (None when not offloading)."""
        with self._lock:
            loaded = self._models.get(spec)
            if loaded is None or loaded.offload is None:
                return None
            return loaded.offload.report()

    def _load(self, spec: ModelSpec, components: set[str]) -> Any:
        import torch

        from vdnodes.model import vd

        dtype = getattr(torch, spec.dtype)
        if spec.source == "tiny":
            return _tiny_model(spec, components, dtype)
        if spec.source == "nano" or _is_nano_file(spec.source):
            from vdnodes.nano.weights import load_nano

            path = None if spec.source == "nano" else spec.source
            return load_nano(spec.storage_device, dtype, path=path, components=components)
        extras = {k: getattr(spec, k) or None for k in ("image_vae", "text_vae", "clip", "optimus_vocab")}
        return vd.load_vd(spec.source, components=components, device=spec.storage_device, dtype=dtype,
                          **extras)

    def weight_digests(self, spec: ModelSpec) -> dict[str, str]:
        """Content digests of the weight files behind ``spec`` (cached by path, size, mtime)."""
        if spec.source == "tiny":
            return {"tiny": f"random-init seed {spec.seed}"}
        out = {}
        paths = [*source_files(_source_path(spec.source)), *(Path(p) for p in (spec.image_vae, spec.text_vae, spec.clip) if p)]
        for path in paths:
            st = path.stat()
            key = (str(path), st.st_size, st.st_mtime_ns)
            with self._lock:
                if key not in self._digests:
                    self._digests[key] = file_digest(path)
                out[path.name] = self._digests[key]
        return out

    def manifest(self) -> dict[str, Any]:
        """Weight digests of every loaded model, for the run manifest saved into outputs."""
        with self._lock:
            specs = list(self._models)
        return {"models": [{"source": _source_name(s.source), "dtype": s.dtype, "device": s.device,
                            "weights": self.weight_digests(s)} for s in specs]}

    def loaded(self) -> dict[ModelSpec, set[str]]:
        with self._lock:
            return {s: set(m.components) for s, m in self._models.items()}

    def clear(self) -> None:
        with self._lock:
            self._models.clear()


def _tiny_model(spec: ModelSpec, components: set[str], dtype: Any) -> Any:
    """The tiny test model: every component, deterministic random weights from ``spec.seed``."""
    import torch

    from vdnodes.model import vd
    from vdnodes.model.configs import tiny_config
    from vdnodes.model.tokenizers import clip_tokenizer
    from vdnodes.model.word_tokenizers import word_tokenizers

    config = tiny_config()
    tokenizers = word_tokenizers(config.optimus.enc_vocab_size, config.optimus.dec_vocab_size)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(spec.seed)
        model = vd.build(config, vd.COMPONENTS, device="cpu", dtype=torch.float32,
                         clip_tokenizer=clip_tokenizer(), optimus_tokenizers=tokenizers)
        _randomise_zero_inits(model)
    return model.to(device=spec.storage_device, dtype=dtype).eval()


def _randomise_zero_inits(model: Any) -> None:
    """Give zero-initialised output layers small random values, so random models are not trivial."""
    import torch

    for name, p in model.named_parameters():
        if p.dim() > 1 and not p.detach().abs().sum():
            torch.nn.init.normal_(p, std=0.02)


def _attach_group(model: Any, group: ModelGroup, spec: ModelSpec) -> None:
    """Build a plugin's layer group for ``model`` and add it to the model's UNet."""
    import torch

    config = model.config
    if group.presets and config.name not in group.presets:
        raise ValueError(f"{group.component} was trained for the {', '.join(group.presets)} model, "
                         f"not for {config.name!r} (model source {_source_name(spec.source)!r})")
    module = group.build(config).to(device=spec.storage_device, dtype=getattr(torch, spec.dtype)).eval()
    kind = group.component.split(".")[1]
    if kind == "context":
        model.unet.add_context_group(group.modality, module)
    else:
        model.unet.add_data_group(group.modality, module)


def _accelerate(model: Any, components: set[str], device: str) -> None:
    """Channels-last and ``torch.compile`` where the run asks for them (``vdnodes.model.accel``)."""
    from vdnodes.model import accel
    from vdnodes.model.offload import component_modules

    if accel.channels_last_wanted(device):
        for c in components:
            if c.startswith(("unet.data.image", "vae_image.")):
                for module in component_modules(model, c):
                    accel.use_channels_last(module)
    backend = accel.compile_backend()
    if backend is not None and "unet.time" in components:
        accel.compile_module(model.unet, backend)


def _merge(master: Any, part: Any) -> None:
    """Move the components of ``part`` into ``master`` (both ``VersatileDiffusion``)."""
    from vdnodes.model.vd import NotLoaded

    if part.unet is not None:
        if master.unet is None:
            master.unet = part.unet
        else:
            for name, group in part.unet.data.items():
                if name not in master.unet.data:
                    master.unet.add_data_group(name, group)
            for name, group in part.unet.context.items():
                if name not in master.unet.context:
                    master.unet.add_context_group(name, group)
    for comp in ("vae_image", "vae_text"):
        mine, theirs = getattr(master, comp), getattr(part, comp)
        if theirs is None:
            continue
        if mine is None:
            setattr(master, comp, theirs)
            continue
        for child_name, child in theirs.named_children():
            if not isinstance(child, NotLoaded) and isinstance(getattr(mine, child_name, None), NotLoaded):
                setattr(mine, child_name, child)
    for comp in ("clip_text", "clip_image"):
        if getattr(master, comp) is None and getattr(part, comp) is not None:
            setattr(master, comp, getattr(part, comp))
    master.components = master.components | part.components


@dataclass(frozen=True)
class VDHandle:
    """The ``VDModel`` socket value: a spec plus the manager that owns the weights."""

    spec: ModelSpec
    manager: ModelManager = field(compare=False, repr=False)
    groups: Mapping[str, ModelGroup] = field(default_factory=dict, compare=False, repr=False)  # plugin layers

    @property
    def device(self) -> str:
        return self.spec.device

    @property
    def dtype(self) -> Any:
        import torch

        return getattr(torch, self.spec.dtype)

    def model(self, *components: str) -> Any:
        return self.manager.ensure(self.spec, set(components), self.groups)

    def config(self) -> Any:
        """The model's ``VDConfig`` (loads nothing beyond what is already loaded, except for tiny)."""
        return self.model("unet.time").config

    def unet(self, xtype: str, contexts: set[str] | frozenset[str]) -> Any:
        comps = {"unet.time", f"unet.data.{xtype}", *(f"unet.context.{c}" for c in contexts)}
        return self.model(*comps).unet

    def clip_text(self) -> Any:
        return self.model("clip_text").clip_text

    def clip_image(self) -> Any:
        return self.model("clip_image").clip_image

    def image_vae(self, *, encoder: bool = False, decoder: bool = False) -> Any:
        comps = {"vae_image.encoder"} if encoder else set()
        comps |= {"vae_image.decoder"} if decoder else set()
        return self.model(*comps).vae_image

    def text_vae(self, *, encoder: bool = False, decoder: bool = False) -> Any:
        comps = {"vae_text.encoder"} if encoder else set()
        comps |= {"vae_text.decoder"} if decoder else set()
        return self.model(*comps).vae_text

    def manifest(self) -> dict[str, Any]:
        return {"source": _source_name(self.spec.source), "dtype": self.spec.dtype, "device": self.spec.device,
                "weights": self.manager.weight_digests(self.spec)}


def _model_fingerprint(params: Any, env: Any) -> str:
    source = params["source"]
    if source == "tiny":
        return "tiny"
    path = Path(_source_path(source) if source == "nano" else resolve_user_path(source, env["base_dir"]))
    try:
        files = source_files(str(path))
        return ";".join(f"{f}:{f.stat().st_size}:{f.stat().st_mtime_ns}" for f in files)
    except OSError:
        return f"missing:{path}"


def _model_preflight(params: Any, env: Any) -> str | None:
    """Every path the node names is there, and real VD weights fit the model in layout, keys and
    shapes (read from the files' headers; no weight is read)."""
    from vdnodes.core.limits import file_kind_problem

    paths = {}
    for name in ("source", "image_vae", "text_vae", "clip", "optimus_vocab"):
        value = params[name]
        if not value or (name == "source" and value == "tiny"):
            continue
        if name == "source" and value == "nano":
            from vdnodes.nano.shipped import NANO_WEIGHTS, missing_weights_message

            if not NANO_WEIGHTS.is_file():
                return "source: " + missing_weights_message()
            continue
        path = Path(resolve_user_path(value, env["base_dir"], env.get("located")))
        why = file_kind_problem(path, "model file", folder_ok=True)
        if why:
            return f"{name}: {why}"
        paths[name] = str(path)
    source = paths.pop("source", None)
    if source is None or _is_nano_file(source):
        return None
    return _weights_problem(source, paths)


def _weights_problem(source: str, extras: dict[str, str]) -> str | None:
    """Why the VD weights at ``source`` (+ extra component files) cannot load, from headers only."""
    from vdnodes.model import vd
    from vdnodes.model.checkpoints import CheckpointError

    try:
        vd.load_vd(source, shapes_only=True, **extras)
    except CheckpointError as e:
        return f"source: {e}"
    except (OSError, ValueError) as e:
        return f"source: cannot read {source}: {e}"
    return None


def _resolve_optional(ctx: Any, value: str, what: str) -> str:
    if not value:
        return ""
    path = Path(ctx.resolve_path(value))
    if not path.exists():
        raise NodeInputError(f"{what} not found: {path}", socket=what)
    return str(path)


@node("vd.load_model", version="1.0.0", category="model", title="Load VD model", purity="external",
      fingerprint=_model_fingerprint, preflight=_model_preflight,
      doc="A Versatile Diffusion model. Components load lazily, only when a node uses them "
          "(a text->image graph never reads the text data layers or Optimus). Source: " + SOURCES_DOC + ".",
      params={
          "source": Param("Path", DEFAULT_SOURCE, doc="Model source: " + SOURCES_DOC + ".", widget="file"),
          "dtype": Param("Enum", "auto", choices=("auto", "float32", "float16", "bfloat16"),
                         doc="Weight dtype; 'auto' follows the run's --dtype."),
          "device": Param("Enum", "auto", choices=("auto", "cpu", "cuda"),
                          doc="Where the weights live; 'auto' follows the run's --device."),
          "seed": Param("Int", 0, min=0, max=2**31 - 1, doc="Random-weight sources only: init seed."),
          "offload_gb": Param("Float", 0.0, min=0.0, max=1024.0,
                              doc="Model offload for small GPUs: 0 keeps every loaded component on the device; "
                                  "N keeps the weights in CPU memory and at most N GB of the components in use "
                                  "on the device (docs/performance.md)."),
          "image_vae": Param("Path", "", doc="Optional kl-f8.pth for sources without an image VAE.",
                             widget="file"),
          "text_vae": Param("Path", "", doc="Optional optimus-vae.pth for sources without Optimus.",
                            widget="file"),
          "clip": Param("Path", "", doc="Optional CLIP ViT-L/14 weights (file, HF folder or diffusers VD folder).",
                        widget="file"),
          "optimus_vocab": Param("Path", "", doc="Folder with Optimus' BERT/GPT-2 vocabulary files.",
                                 widget="file"),
      },
      outputs={"model": Out("VDModel")})
def load_model(ctx, source: str, dtype: str, device: str, seed: int, image_vae: str, text_vae: str,
               clip: str, optimus_vocab: str, offload_gb: float = 0.0):
    manager = ctx.models
    if manager is None:
        raise RuntimeError("the executor was started without a model manager (services['models'])")
    if source == "nano":
        from vdnodes.nano.shipped import NANO_WEIGHTS, missing_weights_message

        if not NANO_WEIGHTS.is_file():
            raise NodeInputError(missing_weights_message(), socket="source")
    elif source != "tiny":
        path = Path(ctx.resolve_path(source))
        if not path.exists():
            raise NodeInputError(f"model not found: {path}", socket="source",
                                 hint="use 'nano' for the embedded model, 'tiny' for random test weights, "
                                      "or a path to VD weights")
        source = str(path)
    if device == "auto":
        device = ctx.device
    if device.startswith("cuda"):
        import torch

        if not torch.cuda.is_available():
            raise NodeInputError("CUDA is not available on this machine", socket="device",
                                 hint="set device to 'cpu' or 'auto'")
    spec = ModelSpec(source, ctx.dtype if dtype == "auto" else dtype, device, seed,
                     _resolve_optional(ctx, image_vae, "image_vae"), _resolve_optional(ctx, text_vae, "text_vae"),
                     _resolve_optional(ctx, clip, "clip"), _resolve_optional(ctx, optimus_vocab, "optimus_vocab"),
                     float(offload_gb))
    if source not in BUILTIN_SOURCES:
        _check_loadable(spec)
    groups = dict(ctx.registry.model_groups) if ctx.registry is not None else {}
    return VDHandle(spec, manager, groups)


def _check_loadable(spec: ModelSpec) -> None:
    """Fail fast on a file that is not a checkpoint (reads headers only, no weights)."""
    from vdnodes.model import checkpoints as ck
    from vdnodes.model.diffusers_folder import is_diffusers_folder

    path = Path(spec.source)
    try:
        if path.is_dir():
            if not is_diffusers_folder(path):
                raise ck.CheckpointError(f"{path} is a folder without model_index.json")
        else:
            state = ck.read_state_dict(path)
            ck.detect_layout(state.keys(), dict(getattr(state, "metadata", {}) or {}))
    except ck.CheckpointError as e:
        raise NodeInputError(str(e), socket="source") from None
    except OSError as e:
        raise NodeInputError(f"cannot read {path}: {e}", socket="source") from None


_DEFAULT_MANAGER: ModelManager | None = None


def default_manager() -> ModelManager:
    """One manager per process, shared by CLI runs and the canvas."""
    global _DEFAULT_MANAGER
    if _DEFAULT_MANAGER is None:
        _DEFAULT_MANAGER = ModelManager()
    return _DEFAULT_MANAGER


def preload_model_code(graph: Graph, registry: Registry, freeze: bool = False) -> bool:
    """Import torch and transformers now, with the cyclic garbage collector paused; True if it did.

    Only for graphs with a node that takes or gives a ``VDModel`` (the nodes would import them
    lazily anyway, with the collector on). Their import allocates millions of objects, and the
    collections that triggers cost 1-2 s of a 6-7 s import on a 2-core CPU. ``freeze``
    (``gc.freeze``) then moves those objects out of the collector's way for good: for a process
    that runs one command and exits. Otherwise the collector is left as it was.
    """
    import gc

    decls = [registry.get(spec.type) for spec in graph.nodes.values() if spec.type in registry]
    if not any(sock.socket_type.name == "VDModel"
               for d in decls for sock in [*d.inputs.values(), *d.outputs.values()]):
        return False
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        import vdnodes.model.vd  # noqa: F401  (torch, transformers' CLIP, BERT and GPT-2)
    finally:
        if was_enabled:
            gc.enable()
        if freeze:
            gc.freeze()
    return True
