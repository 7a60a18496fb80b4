"""Scene layout for :mod:`nail_segformer.synthetic`: hands, fingers, nails and the nail mask.

The layout is decided before any pixel is painted, so the mask is final here: every nail is a
convex polygon on top of its own fingertip, at least ``NAIL_GAP`` pixels from any other nail.
Every function takes an explicit ``np.random.Generator``; a layout is a pure function of it.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field

import numpy as np
from PIL import Image, ImageDraw

from nail_segformer.synthetic.shapes import (
    POLISH_COLOURS,
    SKIN_TONES,
    capsule,
    flat,
    rasterise,
    superellipse,
    unit,
)

# Natural nails are skin with a pink cast; mixing the skin tone toward this gives the nail bed.
_NAIL_BED = np.array([240.0, 168.0, 174.0])
# Every nail keeps this many pixels clear around it, so two nails end up at least ~6 px apart
# after rasterisation and never merge into one connected component of the mask.
NAIL_GAP = 8
# A nail showing fewer pixels than this, or under half its area, is dropped (cut off by the
# frame), because a sliver at the border is not a nail anyone would annotate.
MIN_NAIL_PX = 24
_FAR = 4000.0  # long enough to take a forearm or finger base outside any image
# Whole-hand palm width as a fraction of the shorter image side, per category.
_PALM_WIDTH = {"2": (0.4, 0.58), "3": (0.24, 0.32), "4": (0.34, 0.5)}


@dataclass(frozen=True)
class Finger:
    """A finger's distal segment; ``part_id`` is its value in the z-ordered label image."""

    part_id: int
    tip: np.ndarray  # centre of the round fingertip
    direction: np.ndarray  # unit vector pointing out of the fingertip
    width: float
    has_nail: bool


@dataclass(frozen=True)
class Hand:
    """Skin polygons in drawing order, fingers and crease lines of one hand."""

    parts: list[np.ndarray]
    fingers: list[Finger]
    creases: list[np.ndarray]  # (2, 2) line segments
    tone: np.ndarray  # RGB skin colour, 0-255 floats
    center: np.ndarray
    direction: np.ndarray  # unit vector from wrist to fingers
    palm_width: float


@dataclass(frozen=True)
class NailStyle:
    """How one hand's nails look: colour, shape and finish."""

    colour: np.ndarray  # RGB, 0-255 floats
    power: float  # superellipse exponent: 2 is oval, 4 is nearly square
    width: float  # nail width / finger width
    length: float  # nail length / nail width
    overhang: float  # distal end beyond the fingertip centre, in finger radii (>1: long nails)
    free_edge: bool  # white tip of a natural nail
    highlight: float  # chance of a specular highlight on each nail


@dataclass(frozen=True)
class Nail:
    """A nail's shape and, once accepted, its raster ``tile`` (bool) placed at ``(x0, y0)``."""

    center: np.ndarray
    half_length: float
    half_width: float
    angle: float
    style: NailStyle
    x0: int = 0
    y0: int = 0
    tile: np.ndarray | None = None

    def outline(self, grow: float = 0.0) -> np.ndarray:
        """Polygon of the nail with both axes widened by ``grow`` pixels."""
        return superellipse(
            self.center,
            self.half_length + grow,
            self.half_width + grow,
            self.angle,
            self.style.power,
        )


@dataclass(frozen=True)
class Layout:
    """Hands, their label image (0 = no skin, k = k-th skin part drawn), nails and masks."""

    hands: list[Hand]
    labels: Image.Image
    nails: list[Nail]
    mask: np.ndarray  # bool (H, W), the nail mask
    taken: np.ndarray  # bool (H, W), nails widened by NAIL_GAP: nothing else may cover it


def _random_skin_tone(rng: np.random.Generator) -> np.ndarray:
    tone = np.array(SKIN_TONES[rng.integers(len(SKIN_TONES))], dtype=float)
    return np.clip(tone * rng.uniform(0.9, 1.06) + rng.normal(0, 6, 3), 0, 255)


def _random_nail_style(rng: np.random.Generator, tone: np.ndarray) -> NailStyle:
    polished = bool(rng.random() < 0.55)
    if polished:
        colour = np.array(POLISH_COLOURS[rng.integers(len(POLISH_COLOURS))], dtype=float)
        colour = np.clip(colour + rng.normal(0, 10, 3), 0, 255)
        length, overhang = rng.uniform(1.05, 1.7), rng.uniform(0.75, 1.45)
    else:
        colour = np.clip(tone + (_NAIL_BED - tone) * rng.uniform(0.25, 0.55), 0, 255)
        length, overhang = rng.uniform(1.0, 1.35), rng.uniform(0.55, 0.95)
    return NailStyle(
        colour=colour,
        power=float(rng.uniform(2.2, 4.0)),
        width=float(rng.uniform(0.66, 0.82)),
        length=float(length),
        overhang=float(overhang),
        free_edge=bool(not polished and rng.random() < 0.5),
        highlight=0.8 if polished else 0.4,
    )


@dataclass
class _Draft:
    """A hand being built; ``scene`` holds every skin polygon of the photo in drawing order."""

    scene: list[np.ndarray]
    parts: list[np.ndarray] = field(default_factory=list)
    creases: list[np.ndarray] = field(default_factory=list)
    fingers: list[Finger] = field(default_factory=list)

    def add(self, poly: np.ndarray) -> int:
        """Add a skin polygon on top of everything so far; returns its label id."""
        self.scene.append(poly)
        self.parts.append(poly)
        return len(self.scene)

    def add_finger(self, base, joint, tip, width: float, has_nail: bool = True) -> None:
        """A finger of two capsules, ``base -> joint`` and ``joint -> tip``."""
        self.add(capsule(base, joint, width * 1.06))
        part_id = self.add(capsule(joint, tip, width))
        direction = (tip - joint) / max(float(np.hypot(*(tip - joint))), 1e-6)
        across = np.array([-direction[1], direction[0]]) * width * 0.3
        self.creases.append(np.array([joint - across, joint + across]))
        self.fingers.append(Finger(part_id, tip, direction, width, has_nail))

    def bent_finger(self, rng, base, angle: float, length: float, width: float, has_nail=True):
        """A finger of ``length`` from ``base`` whose distal segment bends a little."""
        joint = base + unit(angle) * length * 0.55
        reach = max(length * 0.45 - width / 2, width * 0.3)
        self.add_finger(
            base, joint, joint + unit(angle + rng.normal(0, 0.12)) * reach, width, has_nail
        )

    def finish(self, tone, center, direction, palm_width: float) -> Hand:
        return Hand(self.parts, self.fingers, self.creases, tone, center, direction, palm_width)


def _whole_hand(rng, scene, center, angle: float, palm_width: float, tone, mirror: float) -> Hand:
    """Back of a hand: forearm, palm, thumb and four fingers fanned out by a random spread."""
    u, v = unit(angle), unit(angle + np.pi / 2) * mirror
    palm_length = palm_width * rng.uniform(0.95, 1.15)
    finger_width = palm_width / 4 * rng.uniform(0.82, 0.95)
    hand = _Draft(scene)
    wrist = center - u * palm_length * 0.4
    hand.add(capsule(wrist - u * _FAR, wrist, palm_width * rng.uniform(0.75, 0.9)))
    hand.add(superellipse(center, palm_length / 2, palm_width / 2, angle, 2.6))
    thumb = (
        center - v * palm_width * 0.4 - u * palm_length * 0.1,
        angle - mirror * rng.uniform(0.5, 1.1),
        palm_length * rng.uniform(0.65, 0.8),
        finger_width * 1.18,
    )
    thumb_on_top = rng.random() < 0.5
    if not thumb_on_top:
        hand.bent_finger(rng, *thumb)
    spread = rng.uniform(0.03, 0.2)
    length = palm_length * rng.uniform(0.85, 1.05)
    # Index, middle, ring and little finger: (length, width) relative to the hand's.
    for i, (len_ratio, width_ratio) in enumerate(
        ((0.88, 1.0), (1.0, 1.04), (0.94, 0.97), (0.74, 0.84))
    ):
        base = center + u * palm_length * 0.38 + v * (i - 1.5) * palm_width * 0.235
        curled = bool(rng.random() < 0.08)  # folded into the palm: no nail in view
        finger_angle = angle + mirror * (i - 1.5) * spread + rng.normal(0, 0.04)
        finger_length = length * len_ratio * (0.4 if curled else 1.0)
        hand.bent_finger(
            rng, base, finger_angle, finger_length, finger_width * width_ratio, not curled
        )
    if thumb_on_top:
        hand.bent_finger(rng, *thumb)
    return hand.finish(tone, center, u, palm_width)


def _fingertips(rng, scene, width: int, height: int, tone) -> Hand:
    """Close-up: one to three large fingers entering the frame from outside it."""
    finger_width = min(width, height) * rng.uniform(0.16, 0.3)
    angle = -np.pi / 2 + rng.normal(0, 0.9)
    u, v = unit(angle), unit(angle + np.pi / 2)
    center = np.array([width, height]) * (0.5 + rng.uniform(-0.15, 0.15, 2))
    count = int(rng.choice([1, 2, 2, 3, 3]))
    spacing = finger_width * rng.uniform(1.05, 1.5)
    hand = _Draft(scene)
    if rng.random() < 0.5:  # knuckles of curled fingers behind the pointing ones
        knuckles = center - u * finger_width * rng.uniform(1.5, 3) + v * rng.normal(0, spacing)
        hand.add(superellipse(knuckles, finger_width * 1.2, finger_width * 1.8, angle, 2.4))
    for i in range(count):
        tip = center + v * (i - (count - 1) / 2) * spacing + u * rng.normal(0, 0.35) * finger_width
        distal_angle = angle + rng.normal(0, 0.1)
        joint = tip - unit(distal_angle) * finger_width * rng.uniform(1.0, 1.6)
        base = joint - unit(distal_angle + rng.normal(0, 0.12)) * _FAR
        hand.add_finger(base, joint, tip, finger_width)
    return hand.finish(tone, center, u, finger_width * 4)


def _hands(rng, category: str, scene, width: int, height: int, tone) -> list[Hand]:
    """The hands of one photo of ``category`` (see :mod:`nail_segformer.synthetic`)."""
    short_side = min(width, height)
    middle = np.array([width, height]) / 2.0
    mirror = float(rng.choice([-1.0, 1.0]))
    if category == "1":
        return [_fingertips(rng, scene, width, height, tone)]
    if category == "3" and rng.random() < 0.7:
        # Two hands apart along the longer side, fingers across it, mirrored thumbs.
        along = np.array([1.0, 0.0]) if width >= height else np.array([0.0, 1.0])
        angle = math.atan2(along[0], -along[1]) + rng.choice([0.0, np.pi]) + rng.normal(0, 0.3)
        palm_width = short_side * rng.uniform(0.2, 0.3)
        hands = []
        for side in (-1.0, 1.0):
            center = middle + along * side * max(width, height) * rng.uniform(0.17, 0.27)
            center = center + rng.normal(0, 0.05, 2) * short_side
            hand_angle = angle + rng.normal(0, 0.25)
            hands.append(
                _whole_hand(rng, scene, center, hand_angle, palm_width, tone, mirror * side)
            )
        return hands
    palm_width = short_side * rng.uniform(*_PALM_WIDTH[category])
    angle = -np.pi / 2 + rng.normal(0, 0.9)
    # Frame the fingers rather than the palm, as people do when photographing nails.
    center = middle - unit(angle) * palm_width * rng.uniform(0.3, 0.7)
    center = center + rng.uniform(-0.1, 0.1, 2) * (width, height)
    return [_whole_hand(rng, scene, center, angle, palm_width, tone, mirror)]


def _nail_on(finger: Finger, style: NailStyle, shrink: float) -> Nail:
    radius = finger.width / 2.0
    half_width = radius * style.width * shrink
    half_length = half_width * style.length
    center = finger.tip + finger.direction * (radius * style.overhang - half_length)
    angle = math.atan2(finger.direction[1], finger.direction[0])
    return Nail(center, half_length, half_width, angle, style)


def _place_nail(nail: Nail, finger: Finger, labels: np.ndarray, taken: np.ndarray) -> Nail | None:
    """``nail`` with its raster if it is visible, on top of its finger and clear of other nails."""
    poly = nail.outline()
    placed = rasterise(poly, labels.shape[1], labels.shape[0])
    if placed is None:
        return None
    x0, y0, tile = placed
    area = 0.5 * abs(
        np.dot(poly[:, 0], np.roll(poly[:, 1], 1)) - np.dot(poly[:, 1], np.roll(poly[:, 0], 1))
    )
    if tile.sum() < max(MIN_NAIL_PX, 0.5 * area):
        return None
    box = np.s_[y0 : y0 + tile.shape[0], x0 : x0 + tile.shape[1]]
    # Skin parts with a larger id are drawn later and would cover the nail.
    if (labels[box][tile] > finger.part_id).any() or taken[box][tile].any():
        return None
    return dataclasses.replace(nail, x0=x0, y0=y0, tile=tile)


def layout_scene(rng: np.random.Generator, category: str, size: tuple[int, int]) -> Layout:
    """Lay out the hands of one photo and keep every nail that is visible and well apart.

    A nail that would touch another nail's ``NAIL_GAP`` margin is shrunk, then dropped.
    """
    width, height = size
    tone = _random_skin_tone(rng)
    scene: list[np.ndarray] = []
    hands = _hands(rng, category, scene, width, height, tone)
    labels_img = Image.new("L", size, 0)
    draw = ImageDraw.Draw(labels_img)
    for part_id, poly in enumerate(scene, start=1):
        draw.polygon(flat(poly), fill=part_id)
    labels = np.asarray(labels_img)
    taken = np.zeros((height, width), dtype=bool)
    mask = np.zeros((height, width), dtype=bool)
    nails = []
    first_style = _random_nail_style(rng, tone)
    for k, hand in enumerate(hands):
        # A second hand usually belongs to the same person and wears the same polish.
        same = k == 0 or rng.random() < 0.8
        style = first_style if same else _random_nail_style(rng, tone)
        for finger in (f for f in hand.fingers if f.has_nail):
            for shrink in (1.0, 0.85, 0.7):
                nail = _place_nail(_nail_on(finger, style, shrink), finger, labels, taken)
                if nail is not None:
                    break
            if nail is None:
                continue
            mask[
                nail.y0 : nail.y0 + nail.tile.shape[0], nail.x0 : nail.x0 + nail.tile.shape[1]
            ] |= nail.tile
            # For a convex nail, widening both axes by the gap covers the gap-wide ring around it.
            grown = rasterise(nail.outline(NAIL_GAP), width, height)
            gx, gy, ring = grown
            taken[gy : gy + ring.shape[0], gx : gx + ring.shape[1]] |= ring
            nails.append(nail)
    return Layout(hands, labels_img, nails, mask, taken)
