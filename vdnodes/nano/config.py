"""The vd-nano model config: Versatile Diffusion's shape at a size trained on a laptop CPU.

Same structure as VD v1.0 (vd-architecture.md sections 1-4): a 4-level UNet with the
30 data / 16 context slot schedule, image and text data groups, image and text context
groups; an image VAE; CLIP text and vision towers; an Optimus text VAE. Only the widths
are small, and images are 32 x 32 px:

- image VAE: 32 px <-> 4 x 8 x 8 latents (downsampling 4, widths 16/32/64);
- UNet: widths 32/64/64/64, 2 ResBlocks per level, attention at levels 0-2 and the middle
  (as VD), 4 heads, context width 64, text latent 64 spread over VD's 4 positions;
- CLIP: 96 wide, 64-d projection; text 2 layers over a word vocabulary of 72 ids and
  24 positions, vision 4 layers on 32 px in 4 px patches (65 tokens);
- Optimus: 96 wide, 2 layers, 64-d latent, word vocabularies of 72 ids.

Importing this module registers the ``"nano"`` preset (``vdnodes.model.configs.preset``).
What it is not: no weights, no training (``training``), no tokenizers (``tokenizers.py``).
"""

from __future__ import annotations

from vdnodes.model.clip import clip_text_config, clip_vision_config
from vdnodes.model.configs import VDConfig, register_preset
from vdnodes.model.optimus import tiny_optimus_config
from vdnodes.model.unet import UNetConfig
from vdnodes.model.vae import VAEConfig

IMAGE_SIZE = 32  # px; the checker reads scenes at 32 px with >= 99% accuracy
CONTEXT_DIM = 64  # CLIP projection width = UNet context_dim
TEXT_DIM = 64  # Optimus latent = UNet text_dim
CLIP_VOCAB = 72  # word ids incl. [UNK], BOS, EOS (nano.tokenizers)
CLIP_LENGTH = 24  # text context tokens (VD: 77); scene captions are at most 11 with BOS/EOS
OPTIMUS_VOCAB = 72


def nano_config() -> VDConfig:
    """The vd-nano ``VDConfig`` (registered as preset ``"nano"``)."""
    clip_width, clip_layers, vision_layers = 96, 2, 4  # 4 vision layers: 2 barely told shapes apart
    return VDConfig(
        unet=UNetConfig(
            model_channels=32, channel_mult=(1, 2, 2, 2), num_res_blocks=2, attention_levels=(0, 1, 2),
            heads=4, context_dim=CONTEXT_DIM, image_channels=4, text_dim=TEXT_DIM, text_positions=4,
            norm_groups=8,
        ),
        vae=VAEConfig(ch=16, ch_mult=(1, 2, 4), num_res_blocks=1, z_channels=4, embed_dim=4, norm_groups=8,
                      scale_factor=1.0),  # the trained value is written into the weights' config
        clip_text=clip_text_config(
            vocab_size=CLIP_VOCAB, hidden_size=clip_width, intermediate_size=4 * clip_width,
            num_hidden_layers=clip_layers, num_attention_heads=4, max_position_embeddings=CLIP_LENGTH,
            projection_dim=CONTEXT_DIM,
            # BOS/EOS are the last two ids, as in CLIP; EOS pads and is the pooled token.
            bos_token_id=CLIP_VOCAB - 2, eos_token_id=CLIP_VOCAB - 1, pad_token_id=CLIP_VOCAB - 1,
        ),
        clip_vision=clip_vision_config(
            hidden_size=clip_width, intermediate_size=4 * clip_width, num_hidden_layers=vision_layers,
            num_attention_heads=4, image_size=IMAGE_SIZE, patch_size=4, projection_dim=CONTEXT_DIM,
            # a fixed high-frequency position code on the patch tokens: the layout then lies past
            # the five principal components VD's style focus keeps (docs/nano.md section 3)
            position_code_patterns=8, position_code_scale=40.0,
        ),
        optimus=tiny_optimus_config(OPTIMUS_VOCAB, OPTIMUS_VOCAB, hidden=96, layers=2, heads=4,
                                    latent_dim=TEXT_DIM),
        name="nano",
    )


register_preset("nano", nano_config)
