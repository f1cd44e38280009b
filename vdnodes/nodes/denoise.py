"""The dual-guided denoiser: VD's sampling for every flow (t2i, i2i, i2t, t2t, dual, blends)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from vdnodes.core.errors import NodeInputError, RunCancelled
from vdnodes.core.node import In, Out, Param, node
from vdnodes.core.types import SocketType

NATIVE_IMAGE_SIZE = {"full": 512, "nano": 32}  # other toy presets: twice the smallest size the UNet accepts


def _output_type(inputs: Mapping[str, SocketType], params: Mapping[str, Any]) -> dict[str, SocketType]:
    return {"latent": SocketType("Latent", (params["output"],))}


def image_size(config: Any) -> int:
    """A model's native output size in pixels (512 for VD; smallest sensible size for toy presets)."""
    if config.name in NATIVE_IMAGE_SIZE:
        return NATIVE_IMAGE_SIZE[config.name]
    return getattr(config, "image_size", 0) or 2 * _size_factor(config)


def _size_factor(config: Any) -> int:
    """Pixel sizes must be multiples of this: VAE downsampling x the UNet's down levels."""
    return 2 ** (len(config.vae.ch_mult) - 1) * 2 ** (len(config.unet.channel_mult) - 1)


def conditioning_inputs(context: Any, context2: Any, mix: float, batch: int) -> tuple[list, list]:
    """(conds, unconds) ``ContextInput`` lists, one per context part, with its mixing ratio.

    One context: the parts keep their (blend) weights, which the UNet normalises. Two: context2
    takes the share ``mix`` and context ``1 - mix``, each split over its own parts by their
    weights, so a blend in front of dual guidance does not change the text's share.
    """
    from vdnodes.model.conditioning import ContextInput

    def split(parts: tuple, share: float, socket: str) -> list[tuple[Any, float]]:
        total = sum(p.weight for p in parts)
        if total <= 0:
            raise NodeInputError(f"the parts of '{socket}' have no weight (their weights sum to {total})",
                                 socket=socket, hint="give the blend a weight above 0")
        return [(p, share * p.weight / total) for p in parts]

    weighted = [(p, p.weight) for p in context.parts]
    if context2 is not None:
        weighted = split(context.parts, 1.0 - mix, "context") + split(context2.parts, mix, "context2")
    conds, unconds = [], []
    for part, ratio in weighted:
        tokens, uncond = part.tokens, part.uncond
        if tokens.shape[0] != batch:
            if tokens.shape[0] != 1:
                raise NodeInputError(f"a context has batch {tokens.shape[0]} but the run has batch {batch}",
                                     socket="context", hint="use contexts of batch 1 or of the same batch")
            tokens, uncond = tokens.expand(batch, -1, -1), uncond.expand(batch, -1, -1)
        conds.append(ContextInput(tokens, part.modality, ratio))
        unconds.append(ContextInput(uncond, part.modality, ratio))
    return conds, unconds


@node("vd.denoise", version="1.1.0", category="sample", title="Denoise (dual-guided)", purity="seeded",
      doc="Sample a latent with VD's multi-flow UNet. 'output' picks the data layers (image or text); "
          "each context picks its context layers. With two contexts (or a blend) they are mixed "
          "inside every cross-attention slot, context2 taking the share 'mix'. Classifier-free "
          "guidance batches the conditional and unconditional passes. An optional start latent gives "
          "image-to-image / text-to-text sampling: strength 1 ignores it, lower keeps more of it.",
      inputs={"model": In("VDModel"), "context": In("Context"),
              "context2": In("Context", "Optional second context (dual guidance).", optional=True),
              "start": In("Latent", "Optional latent to start from (fidelity).", optional=True)},
      params={
          "output": Param("Enum", "image", choices=("image", "text"), doc="Modality to generate."),
          "seed": Param("Seed", 0, doc="Noise seed."),
          "steps": Param("Int", 50, min=1, max=999, doc="Sampling steps (VD: 50 DDIM)."),
          "guidance": Param("Float", 7.5, min=0.0, max=30.0, step=0.5,
                            doc="Classifier-free guidance scale (VD: 7.5; 1 = no guidance). vd-nano's "
                                "graphs: 3 for image variation, 5 for text output."),
          "sampler": Param("Enum", "ddim", choices=("ddim", "dpmpp_2m"),
                           doc="DDIM (VD's), or DPM-Solver++ 2M (good in ~20 steps)."),
          "eta": Param("Float", 0.0, min=0.0, max=1.0, doc="DDIM stochasticity (0 = deterministic)."),
          "mix": Param("Float", 0.5, min=0.0, max=1.0, step=0.05,
                       doc="Share of context2 when it is connected (VD v1 'mixing' = text share)."),
          "strength": Param("Float", 1.0, min=0.0, max=1.0, step=0.05,
                            doc="With a start latent: 1 = pure noise, 0 = return it unchanged "
                                "(VD's fidelity = 1 - strength)."),
          "start_mode": Param("Enum", "diffusers", choices=("diffusers", "vd"),
                              doc="With a start latent: 'diffusers' noises it to the first step it "
                                  "denoises (img2img); 'vd' noises it one DDIM step higher and keeps "
                                  "int(steps * strength) steps, as VD's fidelity slider does."),
          "width": Param("Int", 0, min=0, max=4096, doc="Image width in pixels (0 = model's native size)."),
          "height": Param("Int", 0, min=0, max=4096, doc="Image height in pixels (0 = native)."),
          "batch": Param("Int", 1, min=1, max=64, doc="Samples per context (when contexts have batch 1)."),
      },
      outputs={"latent": Out("Latent")}, infer_types=_output_type)
def denoise(ctx, model, context, context2, start, output: str, seed: int, steps: int, guidance: float,
            sampler: str, eta: float, mix: float, strength: float, start_mode: str, width: int, height: int,
            batch: int):
    import torch

    from vdnodes.model import sampling

    batch = _batch(context, context2, start, batch)
    modalities = {*context.modalities, *(context2.modalities if context2 is not None else ())}
    conds, unconds = conditioning_inputs(context, context2, mix, batch)
    config = model.config()
    shape = _latent_shape(config, output, batch, width, height, start)
    unet = model.unet(output, modalities)
    dtype, device = model.dtype, model.device

    def unet_fn(x, t, xtype, contexts):
        contexts = [c.with_tokens(c.tokens.to(device=device, dtype=dtype)) for c in contexts]
        return unet(x.to(dtype), t, xtype, contexts).float()

    denoiser = sampling.cfg_denoiser(unet_fn, output, conds, unconds, guidance)
    generator = torch.Generator("cpu").manual_seed(ctx.seed)
    options = {"eta": eta} if sampler == "ddim" else {}

    def on_step(info):
        ctx.progress((info.index + 1) / info.total, f"step {info.index + 1}/{info.total}",
                     preview=info.x0_pred if output == "image" else None)

    with torch.inference_mode():
        try:
            if start is None:
                x = sampling.initial_noise(shape, generator, torch.float32, device)
                return sampling.sample(sampler, denoiser, x, steps, generator=generator, on_step=on_step,
                                       should_cancel=ctx.is_cancelled, **options)
            x0 = _broadcast_start(start, batch).to(device=device, dtype=torch.float32)
            return sampling.sample_img2img(sampler, denoiser, x0, steps, strength, generator=generator,
                                           on_step=on_step, should_cancel=ctx.is_cancelled,
                                           convention=start_mode, **options)
        except sampling.SamplingCancelled:
            raise RunCancelled(ctx.node_id) from None


def _batch(context: Any, context2: Any, start: Any, batch: int) -> int:
    sizes = {c.batch for c in (context, context2) if c is not None} - {1}
    if start is not None and start.shape[0] != 1:
        sizes.add(int(start.shape[0]))
    if len(sizes) > 1:
        raise NodeInputError(f"inputs have different batch sizes {sorted(sizes)}", socket="context2")
    if sizes:
        (n,) = sizes
        if batch not in (1, n):
            raise NodeInputError(f"batch={batch} but the inputs have batch {n}", socket="context")
        return n
    return batch


def _latent_shape(config: Any, output: str, batch: int, width: int, height: int, start: Any) -> tuple[int, ...]:
    if start is not None:
        want_rank = 4 if output == "image" else 2
        if start.ndim != want_rank:
            raise NodeInputError(f"start latent has shape {list(start.shape)}, not a {output} latent",
                                 socket="start", hint=f"connect a Latent[{output}]")
        return (batch, *start.shape[1:])
    if output == "text":
        return (batch, config.unet.text_dim)
    native = image_size(config)
    width, height = width or native, height or native
    factor = _size_factor(config)
    if width % factor or height % factor:
        raise NodeInputError(f"image size {width}x{height} must be a multiple of {factor} for this model",
                             socket="width")
    vae_factor = 2 ** (len(config.vae.ch_mult) - 1)
    return (batch, config.unet.image_channels, height // vae_factor, width // vae_factor)


def _broadcast_start(start: Any, batch: int) -> Any:
    return start.expand(batch, *start.shape[1:]) if start.shape[0] == 1 and batch > 1 else start
