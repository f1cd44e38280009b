"""A diffusers pipeline folder (``model_index.json`` plus one sub-folder per component) as configs and
state dicts, read with ``checkpoints.read_state_dict``. diffusers is never imported here."""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from vdnodes.model.checkpoints import CheckpointError, PathLike, StateDict, read_state_dict


_WEIGHT_FILES = (
    "diffusion_pytorch_model.safetensors", "model.safetensors",
    "diffusion_pytorch_model.bin", "pytorch_model.bin",
    "diffusion_pytorch_model.fp16.safetensors", "model.fp16.safetensors",
    "diffusion_pytorch_model.fp16.bin", "pytorch_model.fp16.bin",
)


# The components whose weights a VD pipeline folder must hold when model_index.json lists them.
WEIGHT_COMPONENTS = ("image_unet", "text_unet", "vae", "text_encoder", "image_encoder")


def is_diffusers_folder(path: PathLike) -> bool:
    return Path(path).is_dir() and (Path(path) / "model_index.json").is_file()


class _MergedState(Mapping[str, torch.Tensor]):
    """Several shard files seen as one state dict (sharded ``*.index.json`` weights)."""

    def __init__(self, shards: dict[str, StateDict], where: dict[str, str]) -> None:
        self._shards, self._where = shards, where

    def __getitem__(self, key: str) -> torch.Tensor:
        return self._shards[self._where[key]][key]

    def locate(self, key: str) -> tuple[StateDict, str]:
        return self._shards[self._where[key]], key

    def __iter__(self) -> Iterator[str]:
        return iter(self._where)

    def __len__(self) -> int:
        return len(self._where)


@dataclass
class DiffusersFolder:
    """A diffusers pipeline folder: ``model_index.json`` + ``<component>/config.json`` + weights."""

    root: Path
    index: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def open(cls, path: PathLike) -> "DiffusersFolder":
        root = Path(path)
        if not root.is_dir():
            raise CheckpointError(f"{str(root)!r} is not a folder; expected a diffusers pipeline "
                                  "folder containing model_index.json")
        index_path = root / "model_index.json"
        if not index_path.is_file():
            raise CheckpointError(f"{str(root)!r} has no model_index.json; expected a diffusers "
                                  "pipeline folder (e.g. shi-labs/versatile-diffusion)")
        try:
            index = json.loads(index_path.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError, RecursionError) as e:
            raise CheckpointError(f"{str(index_path)!r} is not valid JSON ({e})") from None
        if not isinstance(index, dict):
            raise CheckpointError(f"{str(index_path)!r} holds a {type(index).__name__}, not an object of "
                                  "components (\"unet\": [\"diffusers\", \"UNet2DConditionModel\"], ...)")
        folder = cls(root, index)
        gone = [n for n in folder.components if n in WEIGHT_COMPONENTS and not (root / n).is_dir()]
        if gone:
            raise CheckpointError(f"{str(index_path)!r} lists the component(s) {gone}, but {str(root)!r} "
                                  f"has no such folder; the download is incomplete")
        return folder

    @property
    def components(self) -> list[str]:
        """Component names listed in model_index.json (``[library, class]`` entries)."""
        return sorted(k for k, v in self.index.items()
                      if not k.startswith("_") and isinstance(v, list) and v and v[0] is not None)

    def has(self, name: str) -> bool:
        return name in self.components and (self.root / name).is_dir()

    def _folder(self, name: str) -> Path:
        if not self.has(name):
            raise CheckpointError(f"diffusers folder {str(self.root)!r} has no component "
                                  f"{name!r}; it has: {', '.join(self.components) or 'none'}")
        return self.root / name

    def config(self, name: str, filename: str = "config.json") -> dict[str, Any]:
        """A component's JSON config (``config.json``, or e.g. ``preprocessor_config.json``)."""
        path = self._folder(name) / filename
        if not path.is_file():
            raise CheckpointError(f"component {name!r} in {str(self.root)!r} has no {filename}")
        try:
            return json.loads(path.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise CheckpointError(f"{str(path)!r} is not valid JSON ({e})") from None

    def folder(self, name: str) -> Path:
        """Path of a component folder (tokenizer files, scheduler config, ...)."""
        return self._folder(name)

    def weights_path(self, name: str) -> Path:
        folder = self._folder(name)
        for filename in _WEIGHT_FILES:
            if (folder / filename).is_file():
                return folder / filename
        for index in sorted(folder.glob("*.index.json")):
            return index
        raise CheckpointError(f"component {name!r} in {str(self.root)!r} has no weights; "
                              f"expected one of: {', '.join(_WEIGHT_FILES[:4])}")

    def state(self, name: str) -> StateDict:
        """A component's weights (safetensors preferred over ``.bin``; shards merged)."""
        path = self.weights_path(name)
        if path.name.endswith(".index.json"):
            weight_map: dict[str, str] = json.loads(path.read_text())["weight_map"]
            shards = {f: read_state_dict(path.parent / f) for f in sorted(set(weight_map.values()))}
            return _MergedState(shards, weight_map)
        return read_state_dict(path)
