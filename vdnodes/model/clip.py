"""VD's CLIP context encoders: prompts and images -> cross-attention context tokens.

What it is: thin wrappers around transformers' ``CLIPTextModelWithProjection`` and
``CLIPVisionModelWithProjection`` (ViT-L/14, ``openai/clip-vit-large-patch14``) that apply VD's
token normalisation (vd-architecture.md §4.1, §4.2), its unconditional contexts (§4.3) and the
masked image context of the blenders (§4.4). Image preprocessing is done in torch (no
torchvision, no PIL): resize the short side (bicubic, antialiased), centre-crop, normalise.
Small configs for tests and the nano model are provided next to the full-size ones, and the
fixed position code that vd-nano's image context adds to its patch tokens (``position_code``;
off unless the vision config sets ``position_code_patterns``).

What it is not: no checkpoint I/O (only key maps as data), no BERT/CLIP re-implementation.
Known difference from VD v2: VD quantises the image to 8 bits (tensor -> PIL) before
``CLIPImageProcessor``; we stay in float, so pixels differ by at most 1/255 before resizing.
"""

from __future__ import annotations

import enum
import functools

import torch
import torch.nn.functional as F
from torch import nn
from transformers import (
    CLIPTextConfig,
    CLIPTextModelWithProjection,
    CLIPVisionConfig,
    CLIPVisionModelWithProjection,
    PreTrainedTokenizerBase,
)

from vdnodes.model.keymap import KeyMap
from vdnodes.model.tokenizers import CLIP_MAX_LENGTH, CLIP_VOCAB_SIZE, clip_tokenizer

CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
VD_SQUASH_SIZE = 512  # VD v2 squashes every image to 512x512 before CLIP (§8 pitfall 12)
POSITION_CODE_SEED = 123  # the random feature directions of ``position_code``

# ---------------------------------------------------------------------------------------------
# Configs
# ---------------------------------------------------------------------------------------------


def clip_text_config(**overrides) -> CLIPTextConfig:
    """ViT-L/14 text tower + projection (123,650,304 params); keyword overrides for small ones."""
    fields = dict(
        vocab_size=CLIP_VOCAB_SIZE,
        hidden_size=768,
        intermediate_size=3072,
        num_hidden_layers=12,
        num_attention_heads=12,
        max_position_embeddings=CLIP_MAX_LENGTH,
        projection_dim=768,
        hidden_act="quick_gelu",
        bos_token_id=49406,
        eos_token_id=49407,  # pooled token = first <|endoftext|> (padding is also 49407)
        pad_token_id=49407,
    )
    fields.update(overrides)
    return CLIPTextConfig(**fields)


def clip_vision_config(**overrides) -> CLIPVisionConfig:
    """ViT-L/14 vision tower at 224 px + projection (303,966,208 params); overrides allowed."""
    fields = dict(
        hidden_size=1024,
        intermediate_size=4096,
        num_hidden_layers=24,
        num_attention_heads=16,
        image_size=224,
        patch_size=14,
        projection_dim=768,
        hidden_act="quick_gelu",
    )
    fields.update(overrides)
    return CLIPVisionConfig(**fields)


def tiny_clip_text_config(
    hidden_size: int = 32, projection_dim: int = 32, layers: int = 2
) -> CLIPTextConfig:
    """A small text tower that still uses the real 49,408-id tokenizer and 77 positions."""
    return clip_text_config(
        hidden_size=hidden_size,
        intermediate_size=2 * hidden_size,
        num_hidden_layers=layers,
        num_attention_heads=4,
        projection_dim=projection_dim,
    )


def tiny_clip_vision_config(
    hidden_size: int = 32,
    projection_dim: int = 32,
    layers: int = 2,
    image_size: int = 32,
    patch_size: int = 4,
) -> CLIPVisionConfig:
    """A small vision tower: (image_size / patch_size)^2 + 1 tokens (65 by default)."""
    return clip_vision_config(
        hidden_size=hidden_size,
        intermediate_size=2 * hidden_size,
        num_hidden_layers=layers,
        num_attention_heads=4,
        image_size=image_size,
        patch_size=patch_size,
        projection_dim=projection_dim,
    )


# ---------------------------------------------------------------------------------------------
# Position code (vd-nano's image context; not part of VD)
# ---------------------------------------------------------------------------------------------


def position_code(side: int, dim: int, patterns: int, *, highest: bool,
                  seed: int = POSITION_CODE_SEED) -> tuple[torch.Tensor, torch.Tensor]:
    """A fixed code over a ``side x side`` patch grid: ``(grid, directions)``, float32.

    ``grid`` ``[side^2, patterns]``: the lowest (or, with ``highest``, the highest) 2-D DCT
    patterns of the grid, never the constant one (orthonormal columns, patches row-major).
    ``directions`` ``[dim, patterns]``: orthonormal feature directions, each orthogonal to the
    all-ones vector (VD's ``adjust_rank`` removes each token's feature mean first). The code
    ``grid @ directions.T`` has ``patterns`` singular values, all 1.
    """
    if not 1 <= patterns <= side * side - 1 or patterns > dim:
        raise ValueError(f"a position code over {side} x {side} patches in {dim} features takes 1 to "
                         f"{min(side * side - 1, dim)} patterns, got {patterns}")
    n = torch.arange(side, dtype=torch.float64)
    basis = torch.cos(torch.pi * (n[None] + 0.5) * n[:, None] / side)  # [frequency, position]
    basis = basis / basis.norm(dim=1, keepdim=True)
    pairs = sorted(((u, v) for u in range(side) for v in range(side) if u or v),
                   key=lambda f: (-(f[0] + f[1]) if highest else f[0] + f[1], f))
    grid = torch.stack([torch.outer(basis[u], basis[v]).flatten() for u, v in pairs[:patterns]], dim=1)
    g = torch.Generator().manual_seed(seed)
    directions = torch.randn(dim, patterns, generator=g, dtype=torch.float64)
    directions -= directions.mean(0, keepdim=True)  # orthogonal to the all-ones feature vector
    directions = torch.linalg.qr(directions).Q  # [dim, patterns], orthonormal columns
    return grid.float(), directions.float()


@functools.lru_cache(maxsize=8)
def _code(side: int, dim: int, patterns: int) -> torch.Tensor:
    grid, directions = position_code(side, dim, patterns, highest=True)
    return grid @ directions.T  # [side^2, dim]; shared: never modified in place


# ---------------------------------------------------------------------------------------------
# Image geometry (shared by pixels and masks so both see the same crop)
# ---------------------------------------------------------------------------------------------


def _resize_and_crop(x: torch.Tensor, size: int, squash_to: int | None, mode: str) -> torch.Tensor:
    """[B, C, H, W] -> [B, C, size, size].

    ``squash_to=None``: resize the short side to ``size`` and centre-crop (CLIPImageProcessor,
    diffusers). ``squash_to=N``: first squash to N x N ignoring the aspect ratio (VD v2 uses 512),
    then resize to ``size``.
    """
    antialias = mode == "bicubic"  # PIL-like bicubic for pixels; plain bilinear for masks (VD)

    def resize(t: torch.Tensor, hw: tuple[int, int]) -> torch.Tensor:
        return F.interpolate(t, size=hw, mode=mode, align_corners=False, antialias=antialias)

    if squash_to is not None:
        return resize(resize(x, (squash_to, squash_to)), (size, size))
    h, w = x.shape[-2:]
    # CLIPImageProcessor: short side -> size, long side -> int(size * long / short).
    if h <= w:
        new_h, new_w = size, int(size * w / h)
    else:
        new_h, new_w = int(size * h / w), size
    if (new_h, new_w) != (h, w):
        x = resize(x, (new_h, new_w))
    top, left = (new_h - size) // 2, (new_w - size) // 2
    return x[..., top : top + size, left : left + size]


class UncondImage(str, enum.Enum):
    """Unconditional image context (§4.3): the three code bases disagree, so it is a choice."""

    ZEROS = "zeros"  # v2 app, image output: zeros in embedding space
    BLACK = "black"  # v2 app, text output (i2t): CLIP of an all-0 image in [0, 1]
    GREY = "grey"  # v1: CLIP of an all-0.5 image (diffusers means it too; its processor may rescale it)


# ---------------------------------------------------------------------------------------------
# Text context
# ---------------------------------------------------------------------------------------------


class CLIPTextContext(nn.Module):
    """Prompts -> VD text context ``[B, 77, D]`` (§4.1).

    Every token goes through ``text_projection``; the whole sequence is divided by the norm of
    the projected pooled (first EOS) token, so that token has norm 1. Padding positions are kept.
    """

    def __init__(self, config: CLIPTextConfig, tokenizer: PreTrainedTokenizerBase | None = None) -> None:
        super().__init__()
        self.model = CLIPTextModelWithProjection(config)
        self.max_length = config.max_position_embeddings
        self._tokenizer = tokenizer  # None: the offline CLIP tokenizer, built on first use
        self.eval()  # frozen in VD

    @property
    def tokenizer(self) -> PreTrainedTokenizerBase:
        if self._tokenizer is None:
            self._tokenizer = clip_tokenizer()
        return self._tokenizer

    def tokenize(self, prompts: list[str]) -> tuple[torch.Tensor, list[bool]]:
        """Ids ``[B, 77]`` (padded with EOS, truncated) and, per prompt, whether it was truncated."""
        if isinstance(prompts, str):
            raise TypeError("prompts must be a list of strings, not a single string")
        full = self.tokenizer(list(prompts), truncation=False, verbose=False)["input_ids"]
        truncated = [len(ids) > self.max_length for ids in full]
        ids = self.tokenizer(
            list(prompts),
            padding="max_length",
            max_length=self.max_length,
            truncation=True,
            return_tensors="pt",
        )["input_ids"]
        return ids, truncated

    def encode_ids(self, ids: torch.Tensor) -> torch.Tensor:
        """Token ids ``[B, 77]`` -> normalised context ``[B, 77, D]``."""
        vocab = self.model.config.vocab_size
        if int(ids.max()) >= vocab:
            raise ValueError(f"token id {int(ids.max())} is outside the text model's vocabulary ({vocab})")
        ids = ids.to(self.model.text_projection.weight.device)
        out = self.model.text_model(input_ids=ids)
        tokens = self.model.text_projection(out.last_hidden_state)  # [B, 77, D]
        pooled = self.model.text_projection(out.pooler_output)  # [B, D], the EOS token
        return tokens / pooled.norm(dim=-1)[:, None, None]

    def encode(self, prompts: list[str]) -> torch.Tensor:
        """Prompts -> ``[B, 77, D]``. Use ``tokenize`` first to learn which prompts were cut."""
        ids, _ = self.tokenize(prompts)
        return self.encode_ids(ids)

    def unconditional(self, batch: int) -> torch.Tensor:
        """The unconditional text context: the encoding of ``""``, repeated ``[batch, 77, D]``."""
        return self.encode([""]).expand(batch, -1, -1).contiguous()


# ---------------------------------------------------------------------------------------------
# Image context
# ---------------------------------------------------------------------------------------------


class CLIPImageContext(nn.Module):
    """Images in [0, 1] ``[B, 3, H, W]`` -> VD image context ``[B, 1 + (S/P)^2, D]`` (§4.2).

    ``last_hidden_state`` -> ``post_layernorm`` on every token -> ``visual_projection`` -> divide
    all tokens by the norm of token 0 (CLS). ``[B, 257, 768]`` at full size.
    """

    def __init__(self, config: CLIPVisionConfig) -> None:
        super().__init__()
        self.model = CLIPVisionModelWithProjection(config)
        self.image_size = config.image_size
        self.patch_size = config.patch_size
        # vd-nano only (docs/nano.md section 3): a fixed high-frequency position code added to
        # the patch tokens; absent from VD's and other configs (0 patterns: none).
        self.code_patterns = int(getattr(config, "position_code_patterns", 0) or 0)
        self.code_scale = float(getattr(config, "position_code_scale", 0.0) or 0.0)
        if self.code_patterns:
            side = self.image_size // self.patch_size
            position_code(side, config.projection_dim, self.code_patterns, highest=True)  # validates
            if not self.code_scale > 0:
                raise ValueError(f"position_code_scale must be > 0 with a position code, got {self.code_scale}")
        self.eval()  # frozen in VD

    @property
    def num_tokens(self) -> int:
        return (self.image_size // self.patch_size) ** 2 + 1

    def preprocess(self, images: torch.Tensor, *, squash_to: int | None = None) -> torch.Tensor:
        """[B, 3, H, W] in [0, 1] -> normalised CLIP pixels [B, 3, S, S].

        ``squash_to=None`` centre-crops (diffusers); ``squash_to=512`` reproduces VD v2's squash.
        """
        if images.ndim != 4 or images.shape[1] != 3:
            raise ValueError(f"images must be [B, 3, H, W], got {tuple(images.shape)}")
        x = _resize_and_crop(images.float(), self.image_size, squash_to, "bicubic")  # [B, 3, S, S]
        x = x.clamp(0.0, 1.0)  # bicubic overshoots; PIL clips to 8 bits
        # Plain constants, not buffers: a meta-built module loaded with assign=True keeps working.
        mean = torch.tensor(CLIP_MEAN, device=x.device).view(1, 3, 1, 1)
        std = torch.tensor(CLIP_STD, device=x.device).view(1, 3, 1, 1)
        return (x - mean) / std

    def mask_weights(self, masks: torch.Tensor, *, squash_to: int | None = None) -> torch.Tensor:
        """Per-token weights ``[B, T]`` from keep-masks in [0, 1] (1 = keep), §4.4.

        The mask follows the image's geometry (bilinear), then each patch weight is the mask
        mean over that patch and the CLS weight is the mean of the whole mask.
        """
        if masks.ndim == 3:
            masks = masks[:, None]
        if masks.ndim != 4 or masks.shape[1] != 1:
            raise ValueError(f"masks must be [B, 1, H, W] or [B, H, W], got {tuple(masks.shape)}")
        m = _resize_and_crop(masks.float().clamp(0, 1), self.image_size, squash_to, "bilinear")  # [B,1,S,S]
        patches = F.avg_pool2d(m, self.patch_size).flatten(1)  # [B, (S/P)^2]
        cls = m.mean(dim=(1, 2, 3))[:, None]  # [B, 1]
        return torch.cat([cls, patches], dim=1)  # [B, T]

    def encode(
        self, images: torch.Tensor, masks: torch.Tensor | None = None, *, squash_to: int | None = None,
        position_code: bool = True,
    ) -> torch.Tensor:
        """Images ``[B, 3, H, W]`` in [0, 1] -> normalised context ``[B, T, D]``.

        With ``masks`` (§4.4) the embedding output (class + patch + position embeddings) is scaled
        by the per-token weights before the transformer, and the final tokens are scaled again.
        Pixels are not masked. An all-ones mask gives exactly the plain encoding.
        A config with a position code (vd-nano) then adds ``scale * code`` to the patch tokens,
        masked or not (it marks where a patch is, not what it shows); ``position_code=False``
        leaves it out (the CLIP training stage reads the tower's own tokens).
        """
        device = self.model.visual_projection.weight.device
        dtype = self.model.visual_projection.weight.dtype
        pixels = self.preprocess(images.to(device), squash_to=squash_to).to(dtype)  # [B, 3, S, S]
        weights = None
        if masks is not None:
            if masks.shape[0] != images.shape[0]:
                raise ValueError(f"got {masks.shape[0]} masks for {images.shape[0]} images")
            weights = self.mask_weights(masks.to(device), squash_to=squash_to).to(dtype)  # [B, T]

        handle = None
        if weights is not None:
            # Hook instead of re-implementing the embeddings: scale their output in place of VD's
            # monkey-patched forward.
            handle = self.model.vision_model.embeddings.register_forward_hook(
                lambda _module, _args, out: out * weights[:, :, None]
            )
        try:
            hidden = self.model.vision_model(pixel_values=pixels).last_hidden_state  # [B, T, C]
        finally:
            if handle is not None:
                handle.remove()
        tokens = self.model.visual_projection(self.model.vision_model.post_layernorm(hidden))  # [B, T, D]
        tokens = tokens / tokens[:, :1].norm(dim=-1, keepdim=True)
        if weights is not None:
            tokens = tokens * weights[:, :, None]
        if position_code and self.code_patterns:
            side = self.image_size // self.patch_size
            code = _code(side, tokens.shape[2], self.code_patterns).to(tokens.device, tokens.dtype)
            tokens = torch.cat([tokens[:, :1], tokens[:, 1:] + self.code_scale * code], dim=1)
        return tokens

    def unconditional(self, kind: UncondImage | str, like: torch.Tensor) -> torch.Tensor:
        """Unconditional image context shaped like the conditional context ``like`` ``[B, T, D]``.

        ``zeros``: zeros in embedding space; ``black`` / ``grey``: the encoding of a constant
        0 / 0.5 image (a constant image is unchanged by resizing, so its size does not matter).
        """
        kind = UncondImage(kind)
        if kind is UncondImage.ZEROS:
            return torch.zeros_like(like)
        value = 0.0 if kind is UncondImage.BLACK else 0.5
        images = torch.full((like.shape[0], 3, self.image_size, self.image_size), value)
        return self.encode(images).to(device=like.device, dtype=like.dtype)


# ---------------------------------------------------------------------------------------------
# Key maps (checkpoint names -> names in CLIPTextContext / CLIPImageContext state dicts)
# ---------------------------------------------------------------------------------------------

_CLIP_SOURCES = {"hf": "", "diffusers": "", "vd-v1": "clip.model."}


def _clip_prefix(source: str) -> str:
    if source not in _CLIP_SOURCES:
        raise ValueError(
            f"unknown CLIP checkpoint source {source!r}; expected one of {sorted(_CLIP_SOURCES)}"
        )
    return _CLIP_SOURCES[source]


def clip_text_keymap(source: str = "diffusers") -> KeyMap:
    """Key map into ``CLIPTextContext``: ``diffusers``/``hf`` (text_encoder or a full CLIPModel)
    or ``vd-v1`` (``clip.model.*`` inside the v1 full checkpoint)."""
    p = _clip_prefix(source)
    return {f"{p}text_model.": "model.text_model.", f"{p}text_projection.": "model.text_projection."}


def clip_vision_keymap(source: str = "diffusers") -> KeyMap:
    """Key map into ``CLIPImageContext`` (same sources as ``clip_text_keymap``)."""
    p = _clip_prefix(source)
    return {
        f"{p}vision_model.": "model.vision_model.",
        f"{p}visual_projection.": "model.visual_projection.",
    }


def clip_ignored_keys(source: str = "diffusers") -> tuple[str, ...]:
    """Checkpoint keys we recompute or do not use: position-id buffers and ``logit_scale``."""
    p = _clip_prefix(source)
    return (
        f"{p}text_model.embeddings.position_ids",
        f"{p}vision_model.embeddings.position_ids",
        f"{p}logit_scale",
    )
