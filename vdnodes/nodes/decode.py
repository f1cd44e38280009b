"""Decoders: image latents to pictures (kl-f8), text latents to sentences (Optimus)."""

from __future__ import annotations

from vdnodes.core.node import In, Out, Param, node


@node("vd.decode_image", version="1.0.0", category="decode", title="Decode image (VAE)",
      doc="Image latents [B,4,h,w] -> images [B,3,8h,8w] in [0,1] with the kl-f8 decoder.",
      inputs={"model": In("VDModel"), "latent": In("Latent[image]")},
      outputs={"image": Out("Image")})
def decode_image(ctx, model, latent):
    import torch

    vae = model.image_vae(decoder=True)
    with torch.inference_mode():
        return vae.decode(latent.to(model.device, model.dtype)).float()


@node("vd.decode_text", version="1.1.0", category="decode", title="Decode text (Optimus)",
      purity="seeded",
      doc="Text latents [B,768] -> one sentence each with the Optimus decoder. 'sample' draws tokens "
          "as VD does (seeded); 'greedy' takes the most likely token (deterministic). 'trim' and "
          "'dedupe' choose the post-processing of the sampled tokens (docs/vd-demo.md).",
      inputs={"model": In("VDModel"), "latent": In("Latent[text]")},
      params={"mode": Param("Enum", "sample", choices=("sample", "greedy"), doc="Token choice."),
              "seed": Param("Seed", 0, doc="Seed of the token sampling."),
              "max_tokens": Param("Int", 30, min=2, max=128, doc="Length limit, <BOS> included (VD: 30)."),
              "temperature": Param("Float", 1.0, min=0.05, max=10.0, step=0.05,
                                   doc="Mode 'sample': logits are divided by it (VD's temperature, 1)."),
              "trim": Param("Enum", "tokens", choices=("tokens", "vd"),
                            doc="'tokens': drop <BOS>/<EOS> by token id; 'vd': drop the first and last "
                                "whitespace words of the decoded text, as VD does (it loses the first "
                                "word when that word is glued to <BOS>)."),
              "dedupe": Param("Enum", "v2", choices=("v2", "v1", "none"),
                              doc="'v2': remove repeated n-grams (VD's demo); 'v1': remove repeated "
                                  "adjacent words (VD v1 inference.py); 'none'.")},
      outputs={"text": Out("Text")})
def decode_text(ctx, model, latent, mode: str, seed: int, max_tokens: int, temperature: float, trim: str,
                dedupe: str):
    import torch

    vae = model.text_vae(decoder=True)
    generator = torch.Generator("cpu").manual_seed(ctx.seed)
    with torch.inference_mode():
        texts = vae.decode(latent, generator=generator, max_tokens=max_tokens, greedy=mode == "greedy",
                           temperature=temperature, trim=trim, dedupe=dedupe)
    ctx.progress(1.0, texts[0][:80] if texts else "")
    return texts
