"""One look for every figure: a fixed colour and line style per method.

Every plot in the package, the notebooks and the benchmarks draws a method with
``METHOD_STYLE[method]`` (``color`` and ``ls``), so LA-LoRA is the same colour in all figures.
Colours are the colour-blind-safe Okabe-Ito palette; the non-private reference is black and
dashed, the ablation variants share their parent's colour with a dotted line, and the head-only
control is dash-dotted so that it stays apart from DP-LoRA's blue in print and for readers who do not
tell the two blues apart.
"""

from __future__ import annotations

from ..methods import METHODS

METHOD_STYLE: dict[str, dict[str, str]] = {
    "fedlora": {"color": "#000000", "ls": "--"},  # no DP: the reference
    "dp-lora": {"color": "#0072B2", "ls": "-"},  # blue
    "dp-lora+filter": {"color": "#0072B2", "ls": ":"},
    "ffa-lora": {"color": "#E69F00", "ls": "-"},  # orange
    "rolora": {"color": "#009E73", "ls": "-"},  # green
    "lalora": {"color": "#D55E00", "ls": "-"},  # vermilion
    "lalora-nofilter": {"color": "#D55E00", "ls": ":"},
    "dp-head": {"color": "#56B4E9", "ls": "-."},  # sky blue, dash-dot: the head-only control
    "lalora-authors": {"color": "#CC79A7", "ls": "--"},  # reddish purple: LA-LoRA under the authors' protocol
    "lalora-nodp": {"color": "#D55E00", "ls": "--"},  # LA-LoRA's alternation without DP (dashed: no DP)
}
assert set(METHOD_STYLE) == set(METHODS), "every method needs a style"

CHANCE_STYLE = {"color": "grey", "ls": "-.", "lw": 1}
OTHER_STYLE = {"color": "#999999", "ls": "-."}  # a method registered by the user (e.g. in an exercise)


def color(method: str) -> str:
    """The method's colour (see :func:`style`)."""
    return style(method)["color"]


def style(method: str) -> dict[str, str]:
    """``{"color": ..., "ls": ...}`` for ``method``, to splat into a matplotlib call.

    A method registered in ``lalora_lite.methods.METHODS`` after import (a user's own schedule) gets
    ``OTHER_STYLE``; a name that is not a method at all is a ValueError listing the known ones."""
    if method in METHOD_STYLE:
        return METHOD_STYLE[method]
    if method in METHODS:
        return OTHER_STYLE
    raise ValueError(f"no style for method {method!r}; known: {', '.join(METHODS)}")


def hatch(method: str) -> str | None:
    """The bar-chart counterpart of the dotted line: ablation variants are hatched in their parent's colour."""
    return "//" if style(method)["ls"] == ":" else None
