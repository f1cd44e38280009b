"""Encoders: images and prompts into VD contexts (CLIP) and latents (VAEs)."""

from __future__ import annotations

from vdnodes.core.errors import NodeInputError
from vdnodes.core.node import In, Out, Param, node, unicode_problem

UNCOND_DOC = ("Unconditional context paired with it for guidance (vd-architecture §4.3): 'zeros' "
              "(VD v2, image output), 'black' (VD v2, image->text), 'grey' (VD v1 and diffusers).")


def check_unicode(text: list[str], socket: str = "text") -> None:
    """Refuse text the tokenizers cannot take (a lone surrogate), naming the item and position."""
    for i, item in enumerate(text):
        why = unicode_problem(item) if isinstance(item, str) else f"expected a string, got {type(item).__name__}"
        if why:
            raise NodeInputError(f"text item {i}: {why}", socket=socket)


def check_prompts(text: list[str], socket: str = "text") -> None:
    """Refuse empty prompts (and invalid text) before any weights load."""
    check_unicode(text, socket)
    empty = [i for i, t in enumerate(text) if not t.strip()]
    if not text or empty:
        which = "the prompt is" if len(text) <= 1 else f"prompt(s) {empty} are"
        raise NodeInputError(f"{which} empty", socket=socket,
                             hint="type a prompt; VD's unconditional context is added by the denoiser")


def _typed_by_user(ctx) -> bool:
    """Whether the text input comes straight from a ``vd.text`` node (a prompt someone typed)."""
    graph = getattr(ctx, "graph", None)
    spec = graph.nodes.get(ctx.node_id) if graph is not None else None
    link = spec.inputs.get("text") if spec is not None else None
    if link is None:
        return True
    source = graph.nodes.get(link.node)
    return source is None or source.type == "vd.text"


@node("vd.encode_text", version="1.0.0", category="encode", title="Encode text (CLIP)",
      doc="Prompts -> CLIP text tokens [B,77,D] read by VD's text context layers, normalised as VD "
          "does, paired with the encoding of \"\" for guidance. Prompts longer than 77 tokens are "
          "truncated with a warning.",
      inputs={"model": In("VDModel"), "text": In("Text", "One prompt, or a batch of prompts.")},
      outputs={"context": Out("Context[text]")})
def encode_text(ctx, model, text: list[str]):
    import torch

    from vdnodes.nodes.values import Conditioning

    check_unicode(text)
    if _typed_by_user(ctx):
        check_prompts(text)
    elif not text or any(not t.strip() for t in text):
        # a generated text (a decoded caption) may come out empty: encoding "" is then the
        # unconditional context, i.e. that text adds no guidance. Say so instead of failing.
        ctx.warn("a generated text is empty; it encodes to the unconditional context (no guidance)")
    clip = model.clip_text()
    ids, truncated = clip.tokenize(list(text))
    for i, cut in enumerate(truncated):
        if cut:
            ctx.warn(f"prompt {i} is longer than {clip.max_length} tokens and was truncated: "
                     f"{text[i][:60]!r}...")
    with torch.inference_mode():
        tokens = clip.encode_ids(ids)  # [B, 77, D]
        uncond = clip.unconditional(tokens.shape[0])
    return Conditioning.single(tokens, uncond, "text")


@node("vd.encode_image", version="1.0.0", category="encode", title="Encode image (CLIP)",
      doc="Images -> CLIP image tokens [B,257,D] (full size) read by VD's image context layers, "
          "normalised by the CLS token as VD does.",
      inputs={"model": In("VDModel"), "image": In("Image"),
              "mask": In("Mask", "Optional keep-mask (1 = keep) weighting the patches, VD's blender.",
                         optional=True)},
      params={"uncond": Param("Enum", "zeros", choices=("zeros", "black", "grey"), doc=UNCOND_DOC),
              "fit": Param("Enum", "crop", choices=("crop", "squash"),
                           doc="'crop': centre-crop to a square (diffusers); 'squash': resize to a "
                               "square first (original VD).")},
      outputs={"context": Out("Context[image]")})
def encode_image(ctx, model, image, mask, uncond: str, fit: str):
    import torch

    from vdnodes.nodes.values import Conditioning

    clip = model.clip_image()
    squash = 512 if fit == "squash" else None
    with torch.inference_mode():
        tokens = clip.encode(image, mask, squash_to=squash)  # [B, T, D]
        un = clip.unconditional(uncond, tokens)
    return Conditioning.single(tokens, un, "image")


@node("vd.encode_image_latent", version="1.0.0", category="encode", title="Encode image (VAE)",
      purity="seeded",
      doc="Images -> image latents [B,4,H/8,W/8] with the kl-f8 VAE (sampled from the posterior as "
          "VD does, or its mean). Used to start sampling from an image (fidelity).",
      inputs={"model": In("VDModel"), "image": In("Image")},
      params={"sample": Param("Bool", True, doc="Sample the posterior (VD) instead of taking its mean."),
              "seed": Param("Seed", 0, doc="Seed of the posterior sample.")},
      outputs={"latent": Out("Latent[image]")})
def encode_image_latent(ctx, model, image, sample: bool, seed: int):
    import torch

    vae = model.image_vae(encoder=True)
    factor = vae.config.downsample_factor
    h, w = image.shape[-2:]
    if h % factor or w % factor:
        raise NodeInputError(f"image size {w}x{h} is not a multiple of {factor}", socket="image",
                             hint=f"resize it first (image.resize) to multiples of {factor}")
    generator = torch.Generator("cpu").manual_seed(ctx.seed)
    with torch.inference_mode():
        return vae.encode(image.to(model.device, model.dtype), generator=generator, sample=sample)


@node("vd.encode_text_latent", version="1.0.0", category="encode", title="Encode text (Optimus)",
      doc="Sentences -> Optimus text latents [B,768] (the posterior mean; text is lower-cased "
          "first, as VD does).",
      inputs={"model": In("VDModel"), "text": In("Text")},
      outputs={"latent": Out("Latent[text]")})
def encode_text_latent(ctx, model, text: list[str]):
    import torch

    check_prompts(text)
    vae = model.text_vae(encoder=True)
    with torch.inference_mode():
        return vae.encode(list(text)).float()
