"""Latent editing (VD's I2T2I): change words in a text latent, keep the rest."""

from __future__ import annotations

from vdnodes.core.errors import NodeInputError
from vdnodes.core.node import In, Out, Param, node


@node("vd.edit_text_latent", version="1.1.0", category="edit", title="Edit text latent",
      doc="VD's I2T2I text arithmetic (§6.5): project the 'remove' phrase's Optimus direction out of "
          "the latent and add the 'add' phrase's latent. Decode the result, encode it with CLIP and "
          "guide a new image together with the source image's reduced context. VD uses one added "
          "phrase twice, here and in the new image's text context: link one text node to 'add_text' "
          "and to that context's encoder so the two cannot disagree.",
      inputs={"model": In("VDModel"), "latent": In("Latent[text]"),
              "add_text": In("Text", "The phrase to add, from a text node; when linked it replaces "
                                     "the 'add' parameter, which must then be empty.", optional=True)},
      params={"remove": Param("String", "", doc="Phrase to remove, e.g. 'white house'."),
              "add": Param("String", "", doc="Phrase to add, e.g. 'tall castle' (or link 'add_text')."),
              "add_scale": Param("Float", 1.0, min=0.0, max=4.0, doc="Multiplier of the added latent.")},
      outputs={"latent": Out("Latent[text]")})
def edit_text_latent(ctx, model, latent, add_text, remove: str, add: str, add_scale: float):
    import torch

    from vdnodes.model.procedures import edit_text_latent as edit

    if add_text is not None:
        if add.strip():
            raise NodeInputError(f"the phrase to add comes both from the 'add' parameter ({add!r}) and "
                                 "from the linked 'add_text' input; clear the parameter or unlink the "
                                 "input", socket="add")
        if len(add_text) != 1:
            raise NodeInputError(f"'add_text' must be one phrase, got {len(add_text)}", socket="add_text")
        add = add_text[0]
    if not remove.strip() and not add.strip():
        raise NodeInputError("nothing to edit: both 'remove' and 'add' are empty", socket="remove")
    vae = model.text_vae(encoder=True)
    with torch.inference_mode():
        z_remove = vae.encode([remove]).float() if remove.strip() else None
        z_add = vae.encode([add]).float() if add.strip() else None
        return edit(latent.float(), z_remove.to(latent.device) if z_remove is not None else None,
                    z_add.to(latent.device) if z_add is not None else None, add_scale=add_scale)
