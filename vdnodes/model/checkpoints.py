"""Reading and writing checkpoint files, and putting their weights into our modules.

What it is:
1. ``read_state_dict``: a ``.safetensors`` file (lazy, memory-mapped) or a PyTorch
   ``.pth/.pt/.ckpt/.bin`` file (``torch.load(weights_only=True)``, memory-mapped
   when the file allows it) as a flat ``{key: tensor}``. Every way a file can be
   wrong (missing, empty, truncated, an image renamed ``.pth``, a pickle that needs
   unsafe code) is a ``CheckpointError`` naming the file and what was expected.
2. ``detect_layout``: which of the known checkpoint layouts a key set is
   (vd-architecture.md section 7.1/7.2), with an explanation when it is none.
3. ``load_into``: rename through a key map (``keymap.remap``), reconcile
   Linear/1x1-conv shapes (``keymap.fit_shape``), check coverage, and materialise
   a module built with its parameters on ``meta`` (``load_state_dict(assign=True)``),
   so weights are never allocated twice. Coverage problems are one error with counts
   and examples, never a silent ``strict=False``.
4. Our own format: ``save_safetensors`` / ``load_safetensors`` (atomic write, the
   config stored as JSON in the metadata so a model can be rebuilt from the file).

What it is not: no VD-specific key maps (they live next to each module:
``unet_keys.py``, ``vae_keys.py``, ``optimus.py``), no diffusers pipeline folders
(``diffusers_folder.py``) and no model assembly (``vd.py``).
diffusers is never imported here.
"""

from __future__ import annotations

import contextlib
import json
import os
import pickle
import re
import struct
import tempfile
from collections.abc import Iterable, Iterator, Mapping
from enum import Enum
from pathlib import Path
from typing import Any

import torch
from torch import nn

from vdnodes.core.fileio import new_file_mode
from vdnodes.model.keymap import PrefixIndex, fit_shape, remap

PathLike = str | os.PathLike
StateDict = Mapping[str, torch.Tensor]

FORMAT_NAME = "vdnodes"  # value of the "format" metadata entry in our safetensors files
FORMAT_VERSION = "1"
MAX_EXAMPLES = 5  # per kind of problem, in error messages


class CheckpointError(ValueError):
    """A checkpoint file or folder is missing, malformed or does not fit the model."""


class KeyMismatchError(CheckpointError):
    """Checkpoint keys and model keys do not correspond; lists what differs."""

    def __init__(self, message: str, missing: list[str], unexpected: list[str],
                 mismatched: list[tuple[str, tuple[int, ...], tuple[int, ...]]],
                 mismatched_ours: list[str] | None = None) -> None:
        super().__init__(message)
        self.missing = missing
        self.unexpected = unexpected
        self.mismatched = mismatched
        self.mismatched_ours = mismatched_ours or []  # our names of the wrong-shaped tensors


# ---------------------------------------------------------------------------
# 1. Reading one file
# ---------------------------------------------------------------------------

SAFETENSORS_SUFFIXES = (".safetensors",)
TORCH_SUFFIXES = (".pth", ".pt", ".ckpt", ".bin")

# (magic bytes, what the file is), for files that are clearly not checkpoints.
_FOREIGN_MAGIC = (
    (b"\x89PNG", "a PNG image"), (b"\xff\xd8\xff", "a JPEG image"), (b"GIF8", "a GIF image"),
    (b"RIFF", "a RIFF (WebP/WAV) file"), (b"%PDF", "a PDF document"),
    (b"\x1f\x8b", "a gzip archive"), (b"version https://git-lfs", "a Git LFS pointer (the "
     "real file was never downloaded)"), (b"<!DOCTYPE", "an HTML page"), (b"<html", "an HTML page"),
)


def _sniff(path: Path) -> str:
    """"safetensors", "torch-zip", "torch-legacy", or a description of a foreign file."""
    with open(path, "rb") as f:
        head = f.read(64)
    for magic, what in _FOREIGN_MAGIC:
        if head.startswith(magic):
            return what
    if head.startswith(b"PK\x03\x04"):
        return "torch-zip"
    if head.startswith(b"\x80") and len(head) > 1 and head[1] in (2, 3, 4, 5):
        return "torch-legacy"  # a pickle stream: torch's legacy (pre-1.6) format
    if len(head) >= 9 and head[8:9] == b"{":
        return "safetensors"
    try:
        head.decode("utf-8")
        return "a text file"
    except UnicodeDecodeError:
        return "an unrecognised binary file"


def _check_file(path: PathLike) -> Path:
    from vdnodes.core.limits import file_kind_problem

    p = Path(path)
    if not p.exists():
        raise CheckpointError(f"checkpoint {str(p)!r} does not exist")
    why = None if p.is_dir() else file_kind_problem(p, "checkpoint file")  # a FIFO or a device: never read
    if why:
        raise CheckpointError(why)
    if p.is_dir():
        raise CheckpointError(
            f"{str(p)!r} is a folder; expected a checkpoint file "
            f"({', '.join(SAFETENSORS_SUFFIXES + TORCH_SUFFIXES)}) or, for a diffusers pipeline, "
            "a folder with model_index.json (use load_vd)")
    if p.stat().st_size == 0:
        raise CheckpointError(f"checkpoint {str(p)!r} is empty (0 bytes); expected tensor data")
    return p


class SafetensorsState(Mapping[str, torch.Tensor]):
    """Lazy ``{key: tensor}`` view of a safetensors file: tensors are read on access."""

    def __init__(self, path: PathLike) -> None:
        from safetensors import safe_open

        self.path = Path(path)
        self._file = safe_open(str(self.path), framework="pt", device="cpu")
        self._keys = dict.fromkeys(self._file.keys())  # file order, constant-time lookups
        self.metadata: dict[str, str] = dict(self._file.metadata() or {})

    def __getitem__(self, key: str) -> torch.Tensor:
        if key not in self._keys:
            raise KeyError(key)
        return self._file.get_tensor(key)

    def __iter__(self) -> Iterator[str]:
        return iter(self._keys)

    def __len__(self) -> int:
        return len(self._keys)

    def __contains__(self, key: object) -> bool:
        return key in self._keys

    def shape(self, key: str) -> tuple[int, ...]:
        """Shape without reading the data."""
        return tuple(self._file.get_slice(key).get_shape())

    def meta(self, key: str) -> torch.Tensor:
        """A ``meta`` tensor of the stored shape and dtype, from the header alone."""
        info = self._file.get_slice(key)
        dtype = _SAFETENSORS_DTYPES.get(info.get_dtype(), torch.float32)
        return torch.empty(tuple(info.get_shape()), dtype=dtype, device="meta")


_SAFETENSORS_DTYPES = {"F64": torch.float64, "F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16,
                       "I64": torch.int64, "I32": torch.int32, "I16": torch.int16, "I8": torch.int8,
                       "U8": torch.uint8, "BOOL": torch.bool}


def meta_tensor(state: StateDict, key: str) -> torch.Tensor:
    """``state[key]`` as a ``meta`` tensor (shape and dtype only), read from headers where lazy.

    States that gather others (several files, shards) say where a key lives with ``locate``.
    """
    locate = getattr(state, "locate", None)
    if locate is not None:
        inner, inner_key = locate(key)
        return meta_tensor(inner, inner_key)
    if isinstance(state, SafetensorsState):
        return state.meta(key)
    return torch.empty_like(state[key], device="meta")  # torch.load'ed (memory-mapped): no copy


class ShapesOnly(Mapping[str, torch.Tensor]):
    """A state whose tensors are ``meta`` stand-ins: loading through it checks keys and shapes
    against a model without reading any weights (``load_vd(shapes_only=True)``)."""

    def __init__(self, state: StateDict) -> None:
        self._state = state

    def __getitem__(self, key: str) -> torch.Tensor:
        return meta_tensor(self._state, key)

    def __iter__(self) -> Iterator[str]:
        return iter(self._state)

    def __len__(self) -> int:
        return len(self._state)


def _check_safetensors_size(path: Path) -> None:
    """Catch truncation up front: the header says how long the data must be."""
    size = path.stat().st_size
    with open(path, "rb") as f:
        raw = f.read(8)
        if len(raw) < 8:
            raise CheckpointError(f"{str(path)!r} is truncated: {size} bytes, too short for a "
                                  "safetensors header")
        (n,) = struct.unpack("<Q", raw)
        if n > size - 8:
            raise CheckpointError(f"{str(path)!r} is truncated or not a safetensors file: the "
                                  f"header claims {n} bytes but the file has {size}")
        try:
            header = json.loads(f.read(n))
        except (UnicodeDecodeError, json.JSONDecodeError) as e:
            raise CheckpointError(f"{str(path)!r} is not a valid safetensors file (bad header: "
                                  f"{e})") from None
    end = max((v["data_offsets"][1] for k, v in header.items() if k != "__metadata__"), default=0)
    if 8 + n + end > size:
        raise CheckpointError(f"{str(path)!r} is truncated: expected {8 + n + end} bytes of "
                              f"safetensors data, found {size}")


def _unwrap(obj: Any, path: Path) -> dict[str, torch.Tensor]:
    """The flat tensor dict inside what ``torch.load`` returned."""
    for _ in range(3):  # e.g. {"state_dict": {...}} or {"model": {"state_dict": {...}}}
        if not isinstance(obj, Mapping):
            break
        if any(isinstance(v, torch.Tensor) for v in obj.values()):
            break
        inner = next((obj[k] for k in ("state_dict", "model", "module", "model_state_dict")
                      if isinstance(obj.get(k), Mapping)), None)
        if inner is None:
            break
        obj = inner
    if not isinstance(obj, Mapping):
        raise CheckpointError(f"{str(path)!r} holds a {type(obj).__name__}, not a state dict; "
                              "expected a mapping from parameter names to tensors")
    state = {str(k): v for k, v in obj.items() if isinstance(v, torch.Tensor)}
    if not state:
        found = ", ".join(sorted(map(str, obj))[:MAX_EXAMPLES]) or "nothing"
        raise CheckpointError(f"{str(path)!r} contains no tensors (top-level entries: {found}); "
                              "expected a state dict, possibly under 'state_dict' or 'model'")
    if all(k.startswith("module.") for k in state):  # saved from DataParallel
        state = {k[len("module."):]: v for k, v in state.items()}
    return state


def _torch_load(path: Path, kind: str) -> dict[str, torch.Tensor]:
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True, mmap=kind == "torch-zip")
    except pickle.UnpicklingError as e:
        msg = str(e)
        if "Weights only load failed" in msg or "Unsupported global" in msg:
            found = re.search(r"GLOBAL ([\w.]+)", msg)
            detail = f"it references {found[1]}" if found else msg.splitlines()[0]
            raise CheckpointError(
                f"{str(path)!r} stores Python objects besides tensors and would need unsafe "
                f"unpickling ({detail}). vdnodes only loads checkpoints with weights_only=True; "
                "re-save the state dict (or convert it to .safetensors) with code you trust"
            ) from None
        problem = "is truncated" if "truncated" in msg else "is not a readable PyTorch checkpoint"
        raise CheckpointError(f"{str(path)!r} {problem} ({msg.splitlines()[0]})") from None
    except Exception as e:  # noqa: BLE001 - torch raises many types on damaged files
        first = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise CheckpointError(f"{str(path)!r} is truncated or corrupt; expected a PyTorch "
                              f"checkpoint ({first})") from None
    return _unwrap(obj, path)


def read_state_dict(path: PathLike) -> StateDict:
    """``{key: tensor}`` of one checkpoint file (lazy for safetensors, mmap for zip ``.pth``).

    The format is decided from the file's content, not its suffix, so a mislabelled
    file still loads and a foreign file (image, text, LFS pointer) gets a clear error.
    """
    p = _check_file(path)
    kind = _sniff(p)
    if kind == "safetensors":
        _check_safetensors_size(p)
        try:
            return SafetensorsState(p)
        except Exception as e:  # safetensors raises its own SafetensorError type
            raise CheckpointError(f"{str(p)!r} is not a valid safetensors file ({e})") from None
    if kind in ("torch-zip", "torch-legacy"):
        return _torch_load(p, kind)
    expected = ("a safetensors file" if p.suffix in SAFETENSORS_SUFFIXES
                else "a PyTorch checkpoint (torch.save zip or legacy pickle)")
    raise CheckpointError(f"{str(p)!r} looks like {kind}, not a checkpoint; expected {expected}")


def shape_of(state: StateDict, key: str) -> tuple[int, ...]:
    """A tensor's shape, without reading it when the state is lazy."""
    if isinstance(state, SafetensorsState):
        return state.shape(key)
    return tuple(state[key].shape)


# ---------------------------------------------------------------------------
# 2. Which layout is this?
# ---------------------------------------------------------------------------

class Layout(str, Enum):
    """Checkpoint layouts we can load (vd-architecture.md section 7)."""

    VD_V1_FULL = "vd_v1_full"      # whole v1 model: UNets + CLIP + kl-f8 + Optimus
    VD_V2 = "vd_v2"                # the two UNets, v2 slot names
    KL_F8 = "kl_f8"                # image VAE alone, LDM names
    OPTIMUS = "optimus_vae"        # text VAE alone
    VDNODES = "vdnodes"            # our own safetensors format
    DIFFUSERS = "diffusers"        # a pipeline folder (not a single file)


# Signature prefixes: a layout matches when its first group is present (any key), and
# optional extra groups help explain what was found.
_SIGNATURES: dict[Layout, tuple[str, ...]] = {
    Layout.VD_V1_FULL: ("model.diffusion_model.unet_image.", "model.diffusion_model.unet_text."),
    Layout.VD_V2: ("diffuser.image.", "diffuser.text."),
    Layout.KL_F8: ("encoder.conv_in.", "decoder.conv_in.", "quant_conv.", "post_quant_conv."),
    Layout.OPTIMUS: ("encoder.embeddings.", "decoder.transformer."),
}
_DIFFUSERS_COMPONENT_HINTS = {
    "time_embedding.linear_1.": "a diffusers UNet component file",
    "encoder.down_blocks.": "a diffusers VAE component file",
    "text_model.embeddings.": "a transformers CLIP text model file",
    "vision_model.embeddings.": "a transformers CLIP vision model file",
}


def _top_prefixes(keys: Iterable[str], depth: int = 2) -> dict[str, int]:
    counts: dict[str, int] = {}
    for k in keys:
        head = ".".join(k.split(".")[:depth]) + "."
        counts[head] = counts.get(head, 0) + 1
    return counts


def detect_layout(keys: Iterable[str], metadata: Mapping[str, str] | None = None) -> Layout:
    """The ``Layout`` of a key set; ``CheckpointError`` listing what was found otherwise."""
    if metadata and metadata.get("format") == FORMAT_NAME:
        return Layout.VDNODES
    keys = list(keys)
    if any(k.startswith(_SIGNATURES[Layout.VD_V1_FULL]) for k in keys):
        return Layout.VD_V1_FULL
    if any(k.startswith(_SIGNATURES[Layout.VD_V2]) for k in keys):
        return Layout.VD_V2
    has = lambda p: any(k.startswith(p) for k in keys)  # noqa: E731
    if has("encoder.embeddings.") and has("decoder.transformer."):
        return Layout.OPTIMUS
    if has("encoder.conv_in.") and has("decoder.conv_in.") and (has("encoder.down.") or has("decoder.up.")):
        return Layout.KL_F8
    found = sorted(_top_prefixes(keys).items(), key=lambda kv: -kv[1])[:8]
    found_txt = ", ".join(f"{p} ({n})" for p, n in found) or "no keys"
    hint = next((f" It looks like {what}: load the whole diffusers folder instead."
                 for p, what in _DIFFUSERS_COMPONENT_HINTS.items() if has(p)), "")
    known = "; ".join(f"{lay.value}: {', '.join(sig)}" for lay, sig in _SIGNATURES.items())
    raise CheckpointError(
        f"unknown checkpoint layout ({len(keys)} keys; most common prefixes: {found_txt}).{hint} "
        f"Known layouts and their key prefixes: {known}; or a vdnodes safetensors file "
        f"(metadata format={FORMAT_NAME!r}).")


# ---------------------------------------------------------------------------
# 3. Putting weights into modules
# ---------------------------------------------------------------------------

@contextlib.contextmanager
def params_on_meta() -> Iterator[None]:
    """Build modules with parameters on ``meta`` but buffers real (on CPU).

    Buffers are small and some are not saved in checkpoints (CLIP position ids,
    causal masks), so they must hold real values after loading; parameters are
    filled by ``load_into(..., assign)`` without a second allocation. The meta
    parameters are flagged ``_is_hf_initialized``, transformers' own mark for weights
    its ``post_init`` must not initialise: initialising them would run every init
    function through torch's slow meta-tensor reference path for nothing (half of
    vd-nano's load time; buffers are still initialised). torch's own init functions
    (``nn.Linear.reset_parameters`` and the like) skip meta tensors for the same reason.
    """
    original = nn.Module.register_parameter

    def register(module: nn.Module, name: str, param: nn.Parameter | None) -> None:
        if param is not None and param.device.type != "meta":
            param = nn.Parameter(param.to("meta"), requires_grad=param.requires_grad)
            param._is_hf_initialized = True  # type: ignore[attr-defined]
        original(module, name, param)

    nn.Module.register_parameter = register  # type: ignore[method-assign]
    inits = {name: getattr(nn.init, name) for name in _INIT_FUNCTIONS if hasattr(nn.init, name)}
    for name, fn in inits.items():
        setattr(nn.init, name, _skip_meta(fn))
    try:
        yield
    finally:
        nn.Module.register_parameter = original  # type: ignore[method-assign]
        for name, fn in inits.items():
            setattr(nn.init, name, fn)


_INIT_FUNCTIONS = ("uniform_", "normal_", "trunc_normal_", "constant_", "ones_", "zeros_", "eye_", "dirac_",
                   "xavier_uniform_", "xavier_normal_", "kaiming_uniform_", "kaiming_normal_", "orthogonal_",
                   "sparse_")


def _skip_meta(fn: Any) -> Any:
    """``fn`` (a ``torch.nn.init`` function) made a no-op on meta tensors, which hold no values."""
    def init(tensor: torch.Tensor, *args: Any, **kwargs: Any) -> torch.Tensor:
        return tensor if tensor.is_meta else fn(tensor, *args, **kwargs)
    return init


def _tied_groups(module: nn.Module) -> list[list[str]]:
    """Names that share one Parameter (e.g. GPT-2's lm_head and wte), first name first."""
    by_id: dict[int, list[str]] = {}
    for name, p in module.named_parameters(remove_duplicate=False):
        by_id.setdefault(id(p), []).append(name)
    return [names for names in by_id.values() if len(names) > 1]


def _set_param(module: nn.Module, name: str, param: nn.Parameter) -> None:
    owner, _, leaf = name.rpartition(".")
    setattr(module.get_submodule(owner) if owner else module, leaf, param)


def _collisions(names: list[str], keymap: Mapping[str, str], ignore: tuple[str, ...]) -> list[str]:
    index = PrefixIndex(keymap)
    seen: dict[str, str] = {}
    out: list[str] = []
    for k in names:
        if ignore and k.startswith(ignore):
            continue
        ours = index.rename(k)
        if ours is not None:
            if ours in seen:
                out.append(f"{seen[ours]} and {k} -> {ours}")
            seen[ours] = k
    return out


def _examples(items: list[str]) -> str:
    shown = ", ".join(items[:MAX_EXAMPLES])
    return shown + (", ..." if len(items) > MAX_EXAMPLES else "")


def load_into(
    module: nn.Module,
    state: StateDict,
    keymap: Mapping[str, str],
    *,
    ignore: Iterable[str] = (),
    skip: Iterable[str] = (),
    allow_missing: Iterable[str] = (),
    device: torch.device | str | None = None,
    what: str = "checkpoint",
) -> int:
    """Load ``state`` (someone else's names) into ``module`` through ``keymap``.

    - ``ignore``: source prefixes to drop (buffers we recompute, e.g. schedules).
    - ``skip``: *our* prefixes deliberately not built/loaded (flow-aware loading);
      checkpoint keys that land there are not read at all.
    - ``allow_missing``: our prefixes that may stay as built (e.g. non-persistent
      extras); anything else missing is an error.

    Tensors are cast to the dtype of the module's own tensor (floating point only)
    and moved to ``device`` (default: the module's non-meta device, else CPU).
    Returns the number of tensors loaded. Raises ``KeyMismatchError`` with counts
    and examples when keys or shapes do not correspond.
    """
    skip, allow_missing = tuple(skip), tuple(allow_missing)
    # Rename the *names* only, so lazy states read just the tensors we keep.
    ignore = tuple(ignore)
    names = list(state.keys())
    renamed, unmatched = remap({k: k for k in names}, keymap, ignore=ignore)
    n_ignored = sum(k.startswith(ignore) for k in names) if ignore else 0
    if len(renamed) + len(unmatched) + n_ignored != len(names):
        raise CheckpointError(f"{what}: several checkpoint keys map to the same model key, e.g. "
                              f"{_examples(_collisions(names, keymap, ignore))}; a component was "
                              "probably given twice")
    expected = module.state_dict(keep_vars=True)
    tied = _tied_groups(module)
    group_of = {name: group for group in tied for name in group}

    if device is None:
        real = next((t.device for t in expected.values() if t.device.type != "meta"), None)
        device = real or torch.device("cpu")

    missing: list[str] = []
    unexpected = sorted(unmatched)
    mismatched: list[tuple[str, tuple[int, ...], tuple[int, ...]]] = []
    loaded: dict[str, torch.Tensor] = {}
    for ours, src in sorted(renamed.items()):
        if skip and ours.startswith(skip):
            continue
        target = expected.get(ours)
        if target is None:
            unexpected.append(src)
            continue
        value = state[src]
        value = fit_shape(value, tuple(target.shape))
        if tuple(value.shape) != tuple(target.shape):
            mismatched.append((src, tuple(value.shape), tuple(target.shape)))
            continue
        dtype = target.dtype if value.is_floating_point() and target.is_floating_point() else value.dtype
        loaded[ours] = value.to(device=device, dtype=dtype)
    bad_sources = {m[0] for m in mismatched}
    wrong_shape = {ours for ours, src in renamed.items() if src in bad_sources}
    reported: set[str] = set()
    for ours in expected:
        group = group_of.get(ours, [ours])  # a tied weight is present under any of its names
        if any(n in loaded or n in wrong_shape or n in reported or (skip and n.startswith(skip))
               for n in group):
            continue
        if allow_missing and ours.startswith(allow_missing):
            continue
        missing.append(ours)
        reported.add(ours)

    if missing or unexpected or mismatched:
        parts = []
        if missing:
            parts.append(f"{len(missing)} missing (in the model, not in the checkpoint), "
                         f"e.g. {_examples(missing)}")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected (in the checkpoint, not in the model), "
                         f"e.g. {_examples(unexpected)}")
        if mismatched:
            shown = [f"{k}: {list(a)} vs model {list(b)}" for k, a, b in mismatched]
            parts.append(f"{len(mismatched)} with the wrong shape, e.g. {_examples(shown)}")
        raise KeyMismatchError(
            f"{what} does not fit {type(module).__name__}: " + "; ".join(parts),
            missing, unexpected, mismatched, sorted(wrong_shape))

    n_loaded = len(loaded)
    # Fill in tied aliases so load_state_dict sees a complete dict, then re-tie.
    for names in tied:
        source = next((loaded[n] for n in names if n in loaded), None)
        if source is not None:
            for n in names:
                loaded.setdefault(n, source)
    keep = {k: v for k, v in expected.items() if k not in loaded}
    incompatible = module.load_state_dict({**keep, **loaded}, strict=True, assign=True)
    assert not incompatible.missing_keys and not incompatible.unexpected_keys
    for names in tied:
        if names[0] in loaded:
            first = module.get_parameter(names[0])
            for n in names[1:]:
                _set_param(module, n, first)
    return n_loaded


def meta_names(module: nn.Module) -> list[str]:
    """Parameters and buffers still on ``meta`` (i.e. not loaded)."""
    out = [n for n, p in module.named_parameters() if p.device.type == "meta"]
    return out + [n for n, b in module.named_buffers() if b.device.type == "meta"]


# ---------------------------------------------------------------------------
# 4. Our own format
# ---------------------------------------------------------------------------

def unique_state(module_or_state: nn.Module | StateDict) -> dict[str, torch.Tensor]:
    """State dict with shared tensors stored once (safetensors refuses aliases)."""
    if isinstance(module_or_state, nn.Module):
        state = module_or_state.state_dict()
        drop = {n for names in _tied_groups(module_or_state) for n in names[1:]}
    else:
        state, drop = dict(module_or_state), set()
    out: dict[str, torch.Tensor] = {}
    for k, v in state.items():
        if k in drop:
            continue
        if v.device.type == "meta":
            raise CheckpointError(f"cannot save {k!r}: it was never loaded (still on meta)")
        out[k] = v.detach().contiguous().cpu()
    return out


def canonicalize_header(path: PathLike) -> None:
    """Make a safetensors file's bytes a function of its contents alone, in place.

    ``safetensors`` writes the metadata entries in hash-map order, which changes from one
    process to the next, so the same weights and metadata saved twice gave files with
    different sha256s (a reproduced vd-nano did not match the shipped file's digest). This
    rewrites the header with the metadata keys sorted; the tensor entries and data keep the
    library's own order. The header keeps its length (padded with spaces, as the library
    pads it) when the sorted one fits, so only the header bytes are rewritten.
    """
    path = Path(path)
    with open(path, "r+b") as f:
        (length,) = struct.unpack("<Q", f.read(8))
        header = json.loads(f.read(length))
        meta = header.get("__metadata__")
        if not meta:
            return
        header["__metadata__"] = dict(sorted(meta.items()))
        text = json.dumps(header, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
        if len(text) <= length:
            f.seek(8)
            f.write(text.ljust(length))
            return
    # Rare (an escaping difference made the header longer): rewrite the file, streaming the data.
    text = text.ljust(-(-len(text) // 8) * 8)
    tmp = path.with_name(path.name + ".canonical")
    with open(path, "rb") as src, open(tmp, "wb") as dst:
        src.seek(8 + length)
        dst.write(struct.pack("<Q", len(text)) + text)
        while chunk := src.read(1 << 24):
            dst.write(chunk)
    os.replace(tmp, path)


def save_safetensors(
    module_or_state: nn.Module | StateDict,
    path: PathLike,
    metadata: Mapping[str, Any] | None = None,
    *,
    config: Any = None,
) -> Path:
    """Write weights atomically as safetensors (temp file in the same folder, then rename).

    ``config`` (a dict or anything with ``to_dict()``) is stored as JSON under the
    ``"config"`` metadata entry; other ``metadata`` values are stored as strings
    (non-strings as JSON). ``"format": "vdnodes"`` marks the file as ours.
    """
    from safetensors.torch import save_file

    path = Path(path)
    meta: dict[str, str] = {"format": FORMAT_NAME, "format_version": FORMAT_VERSION}
    for k, v in (metadata or {}).items():
        meta[str(k)] = v if isinstance(v, str) else json.dumps(v, sort_keys=True)
    if config is not None:
        cfg = config.to_dict() if hasattr(config, "to_dict") else config
        meta["config"] = json.dumps(cfg, sort_keys=True)
    tensors = unique_state(module_or_state)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        save_file(tensors, tmp, metadata=meta)
        canonicalize_header(tmp)
        os.chmod(tmp, new_file_mode(path))  # not mkstemp's 0o600 (which save_file keeps)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    return path


def load_safetensors(path: PathLike) -> tuple[SafetensorsState, dict[str, Any]]:
    """``(lazy state, metadata)``; ``metadata["config"]`` is decoded from JSON when present."""
    state = read_state_dict(path)
    if not isinstance(state, SafetensorsState):
        raise CheckpointError(f"{str(path)!r} is not a safetensors file; expected our own format")
    meta: dict[str, Any] = dict(state.metadata)
    if "config" in meta:
        try:
            meta["config"] = json.loads(meta["config"])
        except json.JSONDecodeError as e:
            raise CheckpointError(f"{str(path)!r} has a malformed config in its metadata ({e})") from None
    return state, meta
