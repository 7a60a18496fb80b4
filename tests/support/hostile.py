"""Files a user can have that no command may end in a traceback over (see tests/test_hostile.py)."""

import io
import struct
import zlib
from pathlib import Path

from PIL import Image


def png_claiming(path: Path, width: int, height: int, mode: str = "L") -> Path:
    """A small, valid PNG whose header says ``width`` x ``height``: a decompression bomb's header.

    Its pixel data is that of an 8x8 image, so decoding it would fail on truncated data; only
    the header's size matters to a reader that checks sizes before decoding.
    """
    buffer = io.BytesIO()
    Image.new(mode, (8, 8)).save(buffer, format="PNG")
    data = bytearray(buffer.getvalue())
    # Signature (8 bytes), then the IHDR chunk: length (4), type (4), width, height, ..., CRC.
    ihdr = 8 + 8
    data[ihdr : ihdr + 8] = struct.pack(">II", width, height)
    body_end = ihdr + 13
    data[body_end : body_end + 4] = struct.pack(">I", zlib.crc32(bytes(data[ihdr - 4 : body_end])))
    path.write_bytes(bytes(data))
    return path


def _noise(size: tuple[int, int], seed: int) -> Image.Image:
    import numpy as np

    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 255, (size[1], size[0], 3), dtype=np.uint8))


def _nail_mask(size: tuple[int, int], mode: str = "L") -> Image.Image:
    mask = Image.new("L", size, 0)
    mask.paste(255, (2, 2, max(3, size[0] // 2), max(3, size[1] // 2)))
    if mode == "L":
        return mask
    if mode == "LA":
        return Image.merge("LA", (mask, Image.new("L", size, 255)))
    if mode == "I;16":
        return Image.frombytes("I;16", size, bytes(b for v in mask.tobytes() for b in (v, v)))
    if mode == "P":  # palette with a transparent index, as some editors save masks
        palette = mask.point(lambda v: 1 if v else 0).convert("P")
        palette.putpalette([0, 0, 0, 255, 255, 255])
        palette.info["transparency"] = 0
        return palette
    raise ValueError(mode)


# (stem, extension, EXIF block, its orientation): what each made Pillow raise is in the comment.
_DAMAGED_EXIF = [
    ("exif_not_tiff", ".png", b"\xa5", 1),  # SyntaxError: not a TIFF file
    ("exif_cut_short", ".png", b"MM\x00*", 1),  # struct.error: unpack requires 4 bytes
    (  # orientation 6, then struct.error when exif_transpose re-writes the block
        "exif_bad_offset",
        ".jpg",
        b"Exif\x00\x00"
        + bytes.fromhex(
            "4d4d002a00000008000301410002000000060000003201120003000000010006000087690004a5000001"
            "28000038000000eb4d616b65d100000190"
        ),
        6,
    ),
    (  # orientation 6, then TypeError (a date where a rational belongs) on the re-write
        "exif_bad_type",
        ".jpg",
        b"Exif\x00\x00"
        + bytes.fromhex(
            "4d4d002a000000080003011f0002000000060000003201120003000000010006000087690004000000"
            "0100000038000000004d616b657200000190030002000000140000004a00000000323032303a30213a"
            "30312030303a30303a303069"
        ),
        6,
    ),
]


def write_hostile_tree(root: Path) -> tuple[list[str], list[str]]:
    """A data folder of awkward but readable pairs beside broken files.

    Returns:
        ``(good, bad)``: the stems of the pairs every command must read, and the paths (relative
        to ``root``) of the files every command must name.
    """
    images, masks = root / "Images" / "1", root / "Masks" / "1"
    images.mkdir(parents=True)
    masks.mkdir(parents=True)
    good, bad = [], []

    def pair(stem: str, photo: Image.Image, mask: Image.Image, photo_ext=".jpg", **save) -> None:
        photo.save(images / f"{stem}{photo_ext}", **save)
        mask.save(masks / f"{stem}.png")

    # Readable: every EXIF orientation on an odd size (the mask drawn as the photo is seen).
    for orientation in range(1, 9):
        seen = (37, 23)
        stored = (23, 37) if orientation >= 5 else seen
        exif = Image.Exif()
        exif[0x0112] = orientation
        pair(f"exif{orientation}", _noise(stored, orientation), _nail_mask(seen), exif=exif)
        good.append(f"exif{orientation}")
    for mode in ("LA", "I;16", "P"):
        stem = f"mask_{mode.replace(';', '')}"
        pair(stem, _noise((40, 30), 20), _nail_mask((40, 30), mode))
        good.append(stem)
    for mode in ("L", "RGBA", "CMYK"):
        stem = f"photo_{mode}"
        pair(stem, _noise((40, 30), 30).convert(mode), _nail_mask((40, 30)), photo_ext=".png"
             if mode != "CMYK" else ".jpg")  # fmt: skip
        good.append(stem)
    pair("png_named_jpg", _noise((40, 30), 40), _nail_mask((40, 30)), format="PNG")
    good.append("png_named_jpg")
    # Damaged EXIF blocks (found by fuzzing Pillow's parser): the pixels are whole. Unparsable,
    # the photo is read as stored; parsable but not re-writable, turned by its orientation.
    for stem, ext, block, orientation in _DAMAGED_EXIF:
        stored = (23, 37) if orientation == 6 else (37, 23)
        pair(stem, _noise(stored, 50), _nail_mask((37, 23)), photo_ext=ext, exif=block)
        good.append(stem)

    # Broken: each photo has a good mask, so only the photo is to blame.
    source = images / "exif1.jpg"
    broken = {
        "zero_bytes.jpg": b"",
        "random_bytes.jpg": bytes(range(256)) * 4,
        "text.png": b"not an image at all\n",
        **{f"cut_{n}.jpg": source.read_bytes()[:n] for n in (10, 100, 300)},
    }
    for name, content in broken.items():
        (images / name).write_bytes(content)
        _nail_mask((37, 23)).save(masks / f"{Path(name).stem}.png")
        bad.append(f"Images/1/{name}")
    png_claiming(images / "bomb.png", 30000, 30000, mode="RGB")
    _nail_mask((37, 23)).save(masks / "bomb.png")
    bad.append("Images/1/bomb.png")
    return good, bad
