"""Value nodes: one number or string typed in the graph, to drive params of other nodes.

Any param but an Enum can be linked like an input (``nodes.ID.inputs`` naming the param);
these nodes give the values to link: one Integer into several samplers' steps, one Seed
into several seeds.
"""

from __future__ import annotations

from vdnodes.core.node import Out, Param, node


@node("value.int", version="1.0.0", category="input", title="Integer",
      doc="An integer to link into Int or Seed params of other nodes (steps, seed, size...).",
      params={"value": Param("Int", 0, doc="The integer.")},
      outputs={"value": Out("Int")})
def int_value(ctx, value: int) -> int:
    return int(value)


@node("value.float", version="1.0.0", category="input", title="Number",
      doc="A real number to link into Float params of other nodes (guidance, strength...).",
      params={"value": Param("Float", 0.0, doc="The number.")},
      outputs={"value": Out("Float")})
def float_value(ctx, value: float) -> float:
    return float(value)


@node("value.string", version="1.0.0", category="input", title="String",
      doc="A single line of text to link into String or Path params of other nodes (prefix, path...).",
      params={"value": Param("String", "", doc="The string.")},
      outputs={"value": Out("String")})
def string_value(ctx, value: str) -> str:
    return str(value)
