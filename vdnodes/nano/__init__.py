"""vd-nano: the small embedded Versatile Diffusion and the data it is trained and judged on.

``scenes`` generates procedural scenes (shape, colour, texture, background) with template
captions and parses captions back; ``checker`` reads those attributes back from an image with
the generator's own rules (no learned weights), so results can be scored automatically.
"""
