"""The built-in captioning set: generated scenes of coloured shapes with 3 captions each.

Synthetic and deterministic (scene ``i`` is the same everywhere, at every size), so the
captioning recipe runs with no download. Examples refer to scene ``i`` as ``builtin:i``.
"""

from __future__ import annotations

import numpy as np

COLOURS = {
    "red": (220, 40, 40),
    "green": (40, 170, 60),
    "blue": (40, 70, 220),
    "yellow": (235, 200, 30),
}
SHAPES = ("circle", "square", "triangle")
PREFIX = "builtin:"  # an example's image reference to a scene: builtin:INDEX


def _draw(canvas: np.ndarray, shape: str, colour, cx: float, cy: float, r: float) -> None:
    size = canvas.shape[0]
    yy, xx = np.mgrid[0:size, 0:size] / size
    if shape == "circle":
        inside = (xx - cx) ** 2 + (yy - cy) ** 2 <= r * r
    elif shape == "square":
        inside = (np.abs(xx - cx) <= r * 0.85) & (np.abs(yy - cy) <= r * 0.85)
    else:
        inside = (yy <= cy + r * 0.8) & (yy - (cy - r) >= 1.8 * np.abs(xx - cx))
    canvas[inside] = colour


def scene(index: int, size: int = 64) -> tuple[np.ndarray, list[str]]:
    """Generated scene ``index``: a uint8 image and its 3 captions (deterministic).

    Args:
        index: which scene.
        size: image side in pixels.
    """
    rng = np.random.default_rng(index)
    # The noise has its own generator, so the scene is the same at every size.
    noise = np.random.default_rng([index, size]).integers(-12, 12, (size, size, 3))
    canvas = np.clip(245 + noise, 0, 255).astype(np.uint8)
    names = list(COLOURS)
    if rng.random() < 0.35:
        colour, shape = names[rng.integers(4)], SHAPES[rng.integers(3)]
        where = ("top", "bottom", "center")[rng.integers(3)]
        cy = {"top": 0.27, "bottom": 0.73, "center": 0.5}[where]
        _draw(canvas, shape, COLOURS[colour], 0.5 + rng.uniform(-0.08, 0.08), cy, 0.18)
        place = "in the center" if where == "center" else f"at the {where}"
        return canvas, [
            f"a {colour} {shape} {place}",
            f"one {colour} {shape} {place}",
            f"there is a single {colour} {shape} {place}",
        ]
    (a, b), (sa, sb) = rng.choice(4, 2, replace=False), rng.integers(0, 3, 2)
    ca, cb = names[a], names[b]
    sa, sb = SHAPES[sa], SHAPES[sb]
    _draw(canvas, sa, COLOURS[ca], 0.26, 0.5 + rng.uniform(-0.15, 0.15), 0.17)
    _draw(canvas, sb, COLOURS[cb], 0.74, 0.5 + rng.uniform(-0.15, 0.15), 0.17)
    return canvas, [
        f"a {ca} {sa} on the left and a {cb} {sb} on the right",
        f"a {cb} {sb} to the right of a {ca} {sa}",
        f"there is a {ca} {sa} and a {cb} {sb}",
    ]


def builtin_examples(n: int = 3000) -> list[tuple[str, list[str]]]:
    """(``builtin:INDEX``, captions) for the first ``n`` generated scenes.

    Args:
        n: how many scenes.
    """
    return [(f"{PREFIX}{i}", scene(i)[1]) for i in range(n)]


def scene_index(ref: str) -> int | None:
    """The scene a ``builtin:INDEX`` reference names, or None for any other reference.

    Args:
        ref: an example's image reference.
    """
    return int(ref.removeprefix(PREFIX)) if ref.startswith(PREFIX) else None
