"""Pixels for :mod:`nail_segformer.synthetic`: background, distractors, skin, nails, camera.

Painting never changes the nail mask of a :class:`~nail_segformer.synthetic.scene.Layout`:
objects under the hands are drawn before them, and objects in front of the hands are only kept
where they stay clear of every nail. Each step takes and returns an RGB ``PIL.Image``, and all
randomness comes from the ``np.random.Generator`` passed in.
"""

from __future__ import annotations

import io
import math

import numpy as np
from PIL import Image, ImageChops, ImageDraw, ImageFilter

from nail_segformer.synthetic.scene import Layout
from nail_segformer.synthetic.shapes import (
    POLISH_COLOURS,
    SKIN_TONES,
    SURFACE_COLOURS,
    capsule,
    flat,
    rasterise,
    superellipse,
)

_WHITE = np.array([255.0, 255.0, 255.0])
# Per category: (min, max) sharp objects under the hands, max tries for objects in front.
_OBJECT_COUNTS = {"1": (1, 5, 1), "2": (2, 8, 2), "3": (2, 8, 2), "4": (10, 28, 8)}
_OBJECT_KINDS = ("bead", "nail", "button", "bottle", "skin", "lipstick")


def _rgb(colour) -> tuple[int, int, int]:
    return tuple(int(c) for c in np.clip(colour, 0, 255))


def _pick(rng: np.random.Generator, palette) -> np.ndarray:
    return np.array(palette[rng.integers(len(palette))], dtype=float)


def _mix(a: np.ndarray, b: np.ndarray, t: float) -> np.ndarray:
    return a + (b - a) * t


def _distractor_colour(rng: np.random.Generator, layout: Layout) -> np.ndarray:
    """Mostly this photo's own nail colours, so colour alone cannot find the nails."""
    draw = rng.random()
    if draw < 0.5 and layout.nails:
        colour = layout.nails[rng.integers(len(layout.nails))].style.colour
    elif draw < 0.8:
        colour = _pick(rng, POLISH_COLOURS)
    elif draw < 0.93:
        colour = layout.hands[0].tone if rng.random() < 0.5 else _pick(rng, SKIN_TONES)
    else:
        colour = _pick(rng, SURFACE_COLOURS)
    return np.clip(colour + rng.normal(0, 10, 3), 0, 255)


def _object(rng, kind, center, radius, colour, skin) -> list[tuple[np.ndarray, np.ndarray]]:
    """Polygons and colours of one distractor object, back to front."""
    angle = rng.uniform(0, 2 * np.pi)
    u = np.array([math.cos(angle), math.sin(angle)])
    shine = _mix(colour, _WHITE, rng.uniform(0.4, 0.8))
    dark = colour * rng.uniform(0.2, 0.5)
    if kind == "bead":
        body = superellipse(center, radius, radius * rng.uniform(0.75, 1.0), angle)
        spot = superellipse(center - radius * 0.35, radius * 0.25, radius * 0.17, angle)
        return [(body, colour), (spot, shine)]
    if kind == "nail":  # candies, pills, press-on nails: nail-shaped and nail-coloured
        half_length = radius * rng.uniform(1.0, 1.7)
        body = superellipse(center, half_length, radius, angle, rng.uniform(2.2, 4.0))
        across = np.array([-u[1], u[0]])
        spot = superellipse(center + across * radius * 0.3, half_length * 0.6, radius * 0.14, angle)
        return [(body, colour)] + ([(spot, shine)] if rng.random() < 0.6 else [])
    if kind == "button":
        shapes = [(superellipse(center, radius, radius, 0.0), colour)]
        for k in range(int(rng.choice([2, 4]))):
            hole_angle = angle + k * np.pi / 2
            hole = center + radius * 0.32 * np.array([math.cos(hole_angle), math.sin(hole_angle)])
            shapes.append((superellipse(hole, radius * 0.12, radius * 0.12, 0.0, n=12), dark))
        return shapes
    if kind == "bottle":  # a nail-polish bottle: coloured body, dark or metal cap
        body = superellipse(center, radius * 1.3, radius, angle, 5.0)
        cap = capsule(center + u * radius * 1.2, center + u * radius * 2.6, radius * 0.7, n=4)
        cap_colour = _pick(rng, ((20, 20, 24), (200, 170, 90), (210, 210, 215)))
        return [
            (body, colour),
            (cap, cap_colour),
            (superellipse(center, radius * 0.9, radius * 0.12, angle), shine),
        ]
    if kind == "skin":  # another person's finger, a knuckle, a skin-coloured toy
        end = center + u * radius * rng.uniform(2, 5)
        return [
            (capsule(center, end, radius * rng.uniform(1.2, 2.0)), skin * rng.uniform(0.9, 1.08))
        ]
    end = center + u * radius * rng.uniform(2.5, 4.0)  # lipstick or marker with a dark cap
    return [
        (capsule(center, end, radius * 1.1), colour),
        (capsule(end, end + u * radius * 2.5, radius * 1.2), dark),
    ]


def _scatter_objects(rng, draw, layout, count, taken=None) -> None:
    """Draw ``count`` objects sized like this photo's nails; skip any that would touch ``taken``.

    Objects in front of the hands (``taken`` given) are placed around a hand, the others anywhere.
    """
    width, height = layout.labels.size
    nail_radius = np.median([n.half_width for n in layout.nails]) if layout.nails else 10.0
    for _ in range(count):
        kind = _OBJECT_KINDS[rng.integers(len(_OBJECT_KINDS))]
        if taken is None:
            center = rng.uniform(0, 1, 2) * (width, height)
        else:
            hand = layout.hands[rng.integers(len(layout.hands))]
            center = hand.center + rng.normal(0, 0.6, 2) * hand.palm_width
        radius = nail_radius * rng.uniform(0.6, 2.2) * (1.8 if kind == "bottle" else 1.0)
        shapes = _object(
            rng, kind, center, radius, _distractor_colour(rng, layout), layout.hands[0].tone
        )
        if taken is not None and any(_touches(poly, taken) for poly, _ in shapes):
            continue
        for poly, colour in shapes:
            draw.polygon(flat(poly), fill=_rgb(colour))


def _touches(poly: np.ndarray, taken: np.ndarray) -> bool:
    placed = rasterise(poly, taken.shape[1], taken.shape[0])
    if placed is None:
        return False
    x0, y0, tile = placed
    return bool(taken[y0 : y0 + tile.shape[0], x0 : x0 + tile.shape[1]][tile].any())


def _clutter(rng, draw, width, height, base) -> None:
    """Furniture, fabric folds and other large blurred shapes behind the hands."""
    for _ in range(int(rng.integers(6, 24))):
        pick = rng.random()
        if pick < 0.7:
            colour = _pick(rng, SURFACE_COLOURS)
        else:
            colour = _pick(rng, POLISH_COLOURS if pick < 0.85 else SKIN_TONES)
        colour = _rgb(_mix(colour, base, rng.uniform(0.0, 0.5)))
        box = np.sort(rng.uniform(-0.2, 1.2, (2, 2)) * (width, height), axis=0)
        kind = rng.integers(4)
        if kind == 0:
            draw.rectangle(flat(box), fill=colour)
        elif kind == 1:
            draw.ellipse(flat(box), fill=colour)
        elif kind == 2:
            points = rng.uniform(0, 1, (int(rng.integers(3, 7)), 2)) * (box[1] - box[0]) + box[0]
            draw.polygon(flat(points), fill=colour)
        else:
            draw.line(flat(box), fill=colour, width=int(rng.integers(1, max(2, width // 30))))


def _darken(image: Image.Image, amount: Image.Image, factor: float) -> Image.Image:
    """Multiply ``image`` by ``1 - (1 - factor) * amount / 255`` per pixel (``amount`` is ``L``)."""
    return Image.composite(image.point(lambda v: int(v * factor)), image, amount)


def paint_background(rng: np.random.Generator, category: str, layout: Layout) -> Image.Image:
    """Blurred cluttered surface, sharp distractors and, in category 4, a held object."""
    width, height = layout.labels.size
    # Drawing at a lower resolution and upscaling is cheap depth-of-field blur.
    scale = int(rng.integers(2, 5))
    small = (max(width // scale, 1), max(height // scale, 1))
    base = _pick(rng, SURFACE_COLOURS)
    field = np.clip(base + rng.normal(0, 16, (3, 4, 3)), 0, 255).astype(np.uint8)
    background = Image.fromarray(field).resize(small, Image.Resampling.BICUBIC)
    draw = ImageDraw.Draw(background)
    if rng.random() < 0.4:  # wood grain or fabric weave
        step = rng.uniform(2, 8)
        for k in range(int(small[1] / step)):
            y = k * step
            draw.line(
                (0, y, small[0], y + rng.normal(0, 6)), fill=_rgb(base * rng.uniform(0.82, 1.1))
            )
    _clutter(rng, draw, small[0], small[1], base)
    image = background.resize((width, height), Image.Resampling.BILINEAR)
    draw = ImageDraw.Draw(image)
    low, high, _ = _OBJECT_COUNTS[category]
    if category == "4":  # the held object lies under the fingers
        hand = layout.hands[0]
        center = hand.center + hand.direction * hand.palm_width * rng.uniform(0.2, 0.7)
        kind = ("bottle", "bead", "nail", "lipstick")[rng.integers(4)]
        radius = hand.palm_width * rng.uniform(0.3, 0.6)
        for poly, colour in _object(
            rng, kind, center, radius, _distractor_colour(rng, layout), hand.tone
        ):
            draw.polygon(flat(poly), fill=_rgb(colour))
    _scatter_objects(rng, draw, layout, int(rng.integers(low, high + 1)))
    return image


def _shading(rng: np.random.Generator, layout: Layout) -> Image.Image:
    """Half-resolution ``L`` darkening: the hands' cast shadow plus skin outlines and seams."""
    width, height = layout.labels.size
    half = (max(width // 2, 1), max(height // 2, 1))
    hand_size = layout.hands[0].palm_width
    shadow = Image.new("L", half, 0)
    draw = ImageDraw.Draw(shadow)
    offset = rng.normal(0, 0.06, 2) * hand_size
    for hand in layout.hands:
        for poly in hand.parts:
            draw.polygon(flat((poly + offset) / 2.0), fill=int(rng.uniform(100, 220)))
    shadow = shadow.filter(ImageFilter.GaussianBlur(max(hand_size * rng.uniform(0.01, 0.04), 0.5)))
    labels = layout.labels.resize(half, Image.Resampling.NEAREST)
    inside = labels.point(lambda v: 255 if v else 0)
    edges = labels.filter(ImageFilter.FIND_EDGES).point(lambda v: 255 if v else 0)
    radius = max(float(np.median([f.width for h in layout.hands for f in h.fingers])) * 0.06, 0.8)
    # Inverted, so that skin darkens most at its outline and where fingers meet.
    outline = ImageChops.invert(
        ImageChops.subtract(inside, edges).filter(ImageFilter.GaussianBlur(radius))
    )
    return Image.composite(outline, shadow, inside)


def paint_skin(rng: np.random.Generator, image: Image.Image, layout: Layout) -> Image.Image:
    """Cast the hands' shadow, fill the hands, add creases, darken outlines and seams."""
    shading = _shading(rng, layout).resize(image.size, Image.Resampling.BILINEAR)
    draw = ImageDraw.Draw(image)
    for hand in layout.hands:
        for poly in hand.parts:
            draw.polygon(flat(poly), fill=_rgb(hand.tone * rng.uniform(0.95, 1.05)))
        for crease in hand.creases:
            line_width = max(1, int(hand.palm_width / 60))
            draw.line(flat(crease), fill=_rgb(hand.tone * 0.78), width=line_width)
    return _darken(image, shading, rng.uniform(0.5, 0.65))


def paint_nails(rng: np.random.Generator, image: Image.Image, layout: Layout) -> Image.Image:
    """Paint each nail on exactly its mask pixels, with free edge, highlight and darker rim."""
    for nail in layout.nails:
        h, w = nail.tile.shape
        offset = np.array([nail.x0, nail.y0])
        colour = nail.style.colour * rng.uniform(0.93, 1.06)
        u = np.array([math.cos(nail.angle), math.sin(nail.angle)])
        base = (
            _mix(colour, np.array([245.0, 240.0, 232.0]), 0.85) if nail.style.free_edge else colour
        )
        patch = Image.new("RGB", (w, h), _rgb(base))
        draw = ImageDraw.Draw(patch)
        if nail.style.free_edge:  # everything proximal of a curved smile line is nail bed
            bed = superellipse(
                nail.center - u * nail.half_length * 0.3 - offset,
                nail.half_length,
                nail.half_width * 1.4,
                nail.angle,
            )
            draw.polygon(flat(bed), fill=_rgb(colour))
        if rng.random() < nail.style.highlight:
            side = np.array([-u[1], u[0]]) * nail.half_width * rng.uniform(-0.45, 0.45)
            spot = superellipse(
                nail.center + side - offset,
                nail.half_length * rng.uniform(0.4, 0.7),
                nail.half_width * rng.uniform(0.08, 0.18),
                nail.angle,
            )
            draw.polygon(flat(spot), fill=_rgb(_mix(colour, _WHITE, rng.uniform(0.4, 0.85))))
        patch = patch.filter(ImageFilter.GaussianBlur(max(nail.half_width * 0.08, 0.5)))
        tile = Image.fromarray(nail.tile.astype(np.uint8) * 255)
        rim = ImageChops.invert(
            tile.filter(ImageFilter.GaussianBlur(max(nail.half_width * 0.25, 1.0)))
        )
        image.paste(_darken(patch, rim, 0.78), (nail.x0, nail.y0), tile)
    return image


def paint_foreground(
    rng: np.random.Generator, image: Image.Image, category: str, layout: Layout
) -> Image.Image:
    """Objects in front of the hands (held or lying on the fingers) that never cover a nail."""
    count = int(rng.integers(0, _OBJECT_COUNTS[category][2] + 1))
    _scatter_objects(rng, ImageDraw.Draw(image), layout, count, layout.taken)
    return image


def photograph(rng: np.random.Generator, image: Image.Image) -> Image.Image:
    """What a phone camera adds: blur, uneven light, white balance, noise and JPEG."""
    width, height = image.size
    image = image.filter(ImageFilter.BoxBlur(float(rng.uniform(0.3, 1.3))))
    light = Image.fromarray(rng.integers(0, 256, (2, 2), dtype=np.uint8))
    image = _darken(
        image, light.resize((width, height), Image.Resampling.BILINEAR), rng.uniform(0.5, 0.8)
    )
    gain = rng.uniform(0.9, 1.12, 3) * rng.uniform(0.95, 1.3)
    image = image.point([min(int(v * g), 255) for g in gain for v in range(256)])
    amplitude = int(rng.integers(2, 12))
    noise = Image.fromarray(rng.integers(0, 2 * amplitude + 1, (height, width), dtype=np.uint8))
    image = ImageChops.add(image, Image.merge("RGB", (noise, noise, noise)), offset=-amplitude)
    if rng.random() < 0.35:
        # Phone photos are usually compressed once before they reach a data set.
        buffer = io.BytesIO()
        image.save(buffer, "JPEG", quality=int(rng.integers(55, 93)))
        image = Image.open(buffer).convert("RGB")
    return image
