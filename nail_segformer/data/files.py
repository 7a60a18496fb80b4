"""Reading photos and masks from disk: decoding, EXIF orientation and mask-to-label conversion.

Both the training transforms and ``predict`` load files through these functions, so a photo
means the same thing in training and in use.

Mask values are read by the convention their set of values reveals, decided per file:

===========================================  ===================================  ==========
values found in one mask                     read as                              name
===========================================  ===================================  ==========
only 0                                       background everywhere                ``0``
0 and 1 (or only 1)                          0 background, 1 nail                 ``0/1``
0 and 255, maybe anti-aliased greys between  nail where >= half range (128)       ``0/255``
0, 1 and 255 (VOC/MMSeg style)               0 background, 1 nail, 255 ignored    ``0/1/255``
black and one colour (and its blends)        nail where >= half that colour       ``colour``
float values in [0, 1]                       nail where >= 0.5                    ``soft``
only 255                                     refused: all nail or all ignored?
regions of exact 1s among greys (over 5%)    refused: a resized 0/1/255 mask
any other set (class indices 0/1/2, ...)     refused, naming the file and values
===========================================  ===================================  ==========

16-bit masks follow the same rules on 0..65535 (a 16-bit file holding 8-bit values is read as
8-bit); palette masks are read by their indices when those follow the table, else by the
colours the palette shows. JPEG masks follow the table too: their compression noise is edge
greys of a 0/255 mask, and a colour mask's shades within 32 levels of a blend are that blend
(regions of another colour make it a mask of several classes). ``nail_values``
(``--nail_values``) overrides the table: exactly the listed values (or ``#rrggbb`` colours,
in a JPEG their shades) are nail, 255 is ignored unless listed, and everything else is
background.
"""

from __future__ import annotations

import errno
import io
import os
import re
import struct
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from nail_segformer.labels import IGNORE_INDEX, NAIL

# Files that operating systems and sync tools drop next to photos; never data.
_OS_FILES = {".ds_store", "thumbs.db", "desktop.ini", "icon\r"}

# EXIF orientations 5..8 swap width and height.
_EXIF_ORIENTATION_TAG = 0x0112
_TRANSPOSING_ORIENTATIONS = {5, 6, 7, 8}
# How each EXIF orientation turns the stored pixels into the photo as seen.
_TRANSPOSES = {
    1: None,
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}

# Class-index masks use small integers; a value above this and below full range can only be an
# anti-aliased grey of a 0/255 mask.
_LARGEST_CLASS_INDEX = 15
# A colour within this many levels (per channel) of a blend of the mask's colour with black is
# an anti-aliased edge of it, not a colour of its own.
_BLEND_TOLERANCE = 3
# JPEG moves a mask's colours by a few levels, and by tens at edges where it subsamples colour:
# in a JPEG mask, a colour within this many levels of a blend is still that blend.
_LOSSY_TOLERANCE = 32
_LOSSY_FORMATS = {"JPEG", "MPO"}
# Share of a colour mask's lit pixels that may lie inside regions of another colour (regions a
# JPEG's edge errors do not make: they are wider than 2 pixels) before it counts as two classes.
_LOSSY_STRAY_SHARE = 0.01
_ERRORS = (UnidentifiedImageError, OSError, SyntaxError, ValueError)

MASK_CONVENTIONS = ("0", "0/1", "0/255", "0/1/255", "colour", "soft", "nail_values")

# A photo or mask above this many megapixels is refused by name before any pixel is decoded,
# whatever its format (a decompression bomb's header claims billions). 250 MP admits a 200 MP
# phone photo (16320x12240) and its mask, which Pillow's own limit (179 MP) would refuse.
DEFAULT_MAX_MEGAPIXELS = 250.0
MAX_MEGAPIXELS_ENV = "NAIL_SEGFORMER_MAX_MEGAPIXELS"


class ImageReadError(ValueError):
    """A photo or mask that cannot be decoded; the message names the file."""


class DiskFullError(OSError):
    """A write failed because the disk (or the user's quota) is full; the message names the
    folder and how much more space the job needs, as far as it can tell."""


def is_disk_full(err: BaseException) -> bool:
    """Whether ``err`` is the operating system saying there is no space (or quota) left."""
    return isinstance(err, OSError) and err.errno in (errno.ENOSPC, errno.EDQUOT)


def folder_bytes(folder: str | os.PathLike) -> int:
    """Bytes of the files under ``folder``: what a job that fills one like it will need again."""
    return sum(f.stat().st_size for f in Path(folder).rglob("*") if f.is_file())


def disk_full_message(folder: str | os.PathLike, needed_bytes: float | None, job: str) -> str:
    """One line: which folder's disk is full, about how much ``job`` still needs, what to do."""
    need = f"about {needed_bytes / 2**20:,.0f} MiB more" if needed_bytes else "more space"
    return (
        f"No space left on the disk holding {portable_path(folder)}: {job} needs {need}. Free "
        "space there (or choose another folder), then run the same command again"
    )


class ImageTooLargeError(ImageReadError):
    """A photo or mask above the pixel cap (:func:`max_megapixels`); nothing was decoded.

    ``size`` is the header's ``(width, height)``; ``None`` when rebuilt from a message alone
    (re-raised from a data-loader worker).
    """

    fix = f"shrink it, or raise the cap with {MAX_MEGAPIXELS_ENV}=<megapixels>"

    def __init__(self, message: str, size: tuple[int, int] | None = None):
        super().__init__(message)
        self.size = size


class MaskValuesError(ImageReadError):
    """A mask whose values match no convention of the table; the message names file and values."""


class PairReadError(ImageReadError):
    """A photo/mask pair that cannot be read; ``image`` and ``mask`` name its two files.

    Built from a message alone as well, so that it survives being re-raised from a data-loader
    worker process.
    """

    def __init__(self, message: str, image: str | None = None, mask: str | None = None):
        super().__init__(message)
        self.image = image
        self.mask = mask


def max_megapixels() -> float:
    """The pixel cap in megapixels: ``$NAIL_SEGFORMER_MAX_MEGAPIXELS``, else 250.

    Raises:
        ValueError: the variable is set to something other than a positive number.
    """
    value = os.environ.get(MAX_MEGAPIXELS_ENV, "").strip()
    if not value:
        return DEFAULT_MAX_MEGAPIXELS
    try:
        megapixels = float(value)
    except ValueError:
        megapixels = 0.0
    if not megapixels > 0:
        raise ValueError(
            f"{MAX_MEGAPIXELS_ENV}={value!r} is not a positive number of megapixels; unset it "
            f"for the default {DEFAULT_MAX_MEGAPIXELS:g}"
        )
    return megapixels


# Pillow's process-wide pixel limit, put back when the last read through this module ends.
_LIFT_LOCK = threading.Lock()
_lifted = {"reads": 0, "limit": None}


@contextmanager
def _pillow_limit_lifted() -> Iterator[None]:
    """Pillow's pixel limit off while any thread reads a file through this module.

    Pillow checks it in ``Image.open`` and again while decoding some formats (a TIFF's tiles, a
    GIF's frames), raising an error of its own; the package's cap replaces it. Reads overlap in
    threads, so the limit is saved by the first and put back by the last.
    """
    with _LIFT_LOCK:
        if _lifted["reads"] == 0:
            _lifted["limit"], Image.MAX_IMAGE_PIXELS = Image.MAX_IMAGE_PIXELS, None
        _lifted["reads"] += 1
    try:
        yield
    finally:
        with _LIFT_LOCK:
            _lifted["reads"] -= 1
            if _lifted["reads"] == 0:
                Image.MAX_IMAGE_PIXELS = _lifted["limit"]


@contextmanager
def _open_image(path: str | os.PathLike, what: str) -> Iterator[Image.Image]:
    """``Image.open`` under the package's pixel cap instead of Pillow's.

    The cap is applied to the header, before any pixel is read; Pillow's own limit is lifted
    until the image is closed (see :func:`_pillow_limit_lifted`).

    Raises:
        ImageReadError: the file is above the cap (the message says how to raise it).
    """
    with _pillow_limit_lifted():
        try:
            image = Image.open(_readable(path))
        except UnidentifiedImageError:
            if not _is_heif(path):
                raise
            image = _open_heif(path, what)
        with image:
            width, height = image.size
            cap = max_megapixels()
            if width * height > cap * 1e6:
                raise ImageTooLargeError(
                    f"{what} {portable_path(path)} is {width}x{height} pixels "
                    f"({width * height / 1e6:.0f} MP), above the cap of {cap:g} MP: "
                    f"{ImageTooLargeError.fix}",
                    (width, height),
                )
            yield image


@dataclass(frozen=True)
class EmbeddedImage:
    """An image file carried as bytes (a dataset row's photo or label), named for messages.

    Every reader of this module takes one wherever it takes a path, and reads it by the same
    rules (EXIF orientation, the pixel cap, HEIF).
    """

    data: bytes = field(repr=False)
    name: str


def _readable(path) -> str | io.BytesIO:
    """What ``Image.open`` reads for a path or an :class:`EmbeddedImage`."""
    return io.BytesIO(path.data) if isinstance(path, EmbeddedImage) else local_path(path)


def portable_path(path: str | os.PathLike) -> str:
    """A path as text that UTF-8 files, Arrow tables and JSON can hold.

    A name whose bytes are not UTF-8 (from a zip made on another system) reaches Python with
    lone surrogates, which no UTF-8 writer accepts; each such byte is written ``\\xHH``, as
    ``ls -b`` shows it. Every other path comes back unchanged. :func:`local_path` reverses it.
    An :class:`EmbeddedImage` gives its name.
    """
    if isinstance(path, EmbeddedImage):
        return path.name
    text = os.fspath(path)
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return os.fsencode(text).decode("utf-8", "backslashreplace")
    return text


_ESCAPED_BYTE = re.compile(r"\\x([89a-fA-F][0-9a-fA-F])")


def relative_to_root(path: str | os.PathLike, root: Path) -> str:
    """``path`` as reports show it: relative to the data root when inside it, portable text."""
    try:
        return portable_path(Path(path).relative_to(root).as_posix())
    except ValueError:
        return portable_path(path)


def local_path(text: str | os.PathLike) -> str:
    """The file a :func:`portable_path` text names (a path that exists as written wins)."""
    text = os.fspath(text)
    if "\\x" not in text or os.path.lexists(text):
        return text
    return _ESCAPED_BYTE.sub(lambda m: chr(0xDC00 + int(m.group(1), 16)), text)


# HEIC/HEIF (the iPhone's default format): an ISO box "ftyp" with one of these brands.
_HEIF_BRANDS = (b"heic", b"heix", b"hevc", b"hevx", b"heim", b"heis", b"mif1", b"msf1", b"avif")


def _is_heif(path: str | os.PathLike) -> bool:
    if isinstance(path, EmbeddedImage):
        head = path.data[:12]
    else:
        try:
            with open(local_path(path), "rb") as f:
                head = f.read(12)
        except OSError:
            return False
    return head[4:8] == b"ftyp" and head[8:12] in _HEIF_BRANDS


def _open_heif(path: str | os.PathLike, what: str) -> Image.Image:
    """Open a HEIC/HEIF file through ``pillow-heif`` when it is installed; else say what to do."""
    try:
        import pillow_heif
    except ImportError:
        raise ImageReadError(
            f"{what} {portable_path(path)} is a HEIC/HEIF photo (the iPhone's default), which "
            "Pillow cannot read: convert it to JPEG or PNG, or pip install pillow-heif to read "
            "it as it is"
        ) from None
    pillow_heif.register_heif_opener()  # Pillow then reads HEIF like any other format
    return Image.open(_readable(path))


def read_problem(err: ImageReadError, what: str, path: str | os.PathLike) -> tuple[str, str, str]:
    """How every command words a file it cannot read: ``(kind, message, fix)``.

    Args:
        err: what a loader of this module raised for the file.
        what: ``photo`` or ``mask``.
        path: the file (the loaders' messages name it; the message here says "this <what>").

    Returns:
        ``kind`` is ``too large``, ``mask values`` or ``undecodable file``; ``message`` starts
        "this <what>"; ``fix`` says what to do.
    """
    if isinstance(err, ImageTooLargeError) and err.size is not None:
        width, height = err.size
        return (
            "too large",
            f"this {what} is {width}x{height} pixels ({width * height / 1e6:.0f} MP), above the "
            f"cap of {max_megapixels():g} MP; no pixel was read",
            ImageTooLargeError.fix,
        )
    if isinstance(err, MaskValuesError):
        return (
            "mask values",
            str(err).replace(f"mask {portable_path(path)} ", "this mask ", 1),
            "re-export it with 0 = background and 255 (or 1) = nail, or pass --nail_values",
        )
    return (
        "undecodable file",
        f"this {what} cannot be decoded ({err.__cause__ or err})",
        "replace it with a complete image file, or move the pair out of the data folder",
    )


def is_hidden_or_os_file(path: str | os.PathLike) -> bool:
    """True for dot-files, macOS resource forks (``._x``) and OS litter such as ``Thumbs.db``."""
    name = Path(path).name
    return name.startswith(".") or name.lower() in _OS_FILES


def read_header(path: str | os.PathLike) -> tuple[int, int, str]:
    """Read a file's header only (no pixels).

    Returns:
        ``(width, height, mode)`` as the photo is meant to be seen, i.e. after its EXIF
        orientation is applied.

    Raises:
        ImageReadError: the file is not an image PIL can identify.
    """
    try:
        with _open_image(path, "file") as im:
            width, height = im.size
            mode = im.mode
            orientation = _orientation(im)
    except ImageReadError:
        raise
    except _ERRORS as err:
        raise ImageReadError(f"cannot decode {portable_path(path)}: {err}") from err
    if orientation in _TRANSPOSING_ORIENTATIONS:
        width, height = height, width
    return width, height, mode


def _orientation(im: Image.Image) -> int:
    """The EXIF orientation (1..8); 1 when the EXIF block cannot be parsed.

    A damaged block (a writer's bug, a metadata tool gone wrong) leaves the pixels whole: they
    are read as stored, as image viewers show them, by the header and the pixels alike.
    """
    # PngImageFile.getexif() decodes the whole image first, in case an eXIf chunk follows the
    # pixel data; the base method reads what the header carried, which is where PNG writers
    # (and PNG's 3rd edition) put it.
    try:
        orientation = Image.Image.getexif(im).get(_EXIF_ORIENTATION_TAG, 1)
        return orientation if orientation in _TRANSPOSES else 1
    except (SyntaxError, ValueError, TypeError, struct.error):  # what Pillow's parser raises
        return 1


def _upright(im: Image.Image, orientation: int) -> Image.Image:
    """The image as seen: turned by its EXIF ``orientation`` (see :func:`_orientation`).

    Not ``ImageOps.exif_transpose``, which re-reads the EXIF block and re-writes it without the
    orientation: either can fail on a damaged block, and nothing here keeps the metadata.
    """
    method = _TRANSPOSES[orientation]
    return im if method is None else im.transpose(method)


def load_image(
    path: str | os.PathLike,
    reduce_to: tuple[int, int] | None = None,
    return_size: bool = False,
):
    """Decode a photo as RGB, rotated by its EXIF orientation.

    Args:
        path: the photo.
        reduce_to: ``(width, height)`` as seen (after EXIF rotation): a JPEG may then be
            decoded at 1/2, 1/4 or 1/8 scale (libjpeg's DCT scaling, Pillow's ``draft``), the
            largest reduction that keeps both sides at least this large. Other formats, and
            photos already smaller, are decoded whole. ``None`` always decodes every pixel.
        return_size: also return the photo's full ``(width, height)`` as seen, which a reduced
            decode no longer shows, read from the same opening of the file.

    Returns:
        The RGB image; ``(image, (width, height))`` with ``return_size``.

    Raises:
        ImageReadError: the file is missing, truncated or not an image.
    """
    try:
        with _open_image(path, "photo") as im:
            orientation = _orientation(im)
            transposed = orientation in _TRANSPOSING_ORIENTATIONS
            width, height = im.size[::-1] if transposed else im.size
            if reduce_to is not None and im.format == "JPEG":
                # draft works on the stored orientation
                wanted = reduce_to[::-1] if transposed else reduce_to
                im.draft("RGB", (max(1, wanted[0]), max(1, wanted[1])))
            im.load()
            image = _upright(im, orientation)
            image = image.convert("RGB") if image.mode != "RGB" else image.copy()
    except ImageReadError:
        raise
    except _ERRORS as err:
        raise ImageReadError(f"cannot decode photo {portable_path(path)}: {err}") from err
    return (image, (width, height)) if return_size else image


# --------------------------------------------------------------------------- mask values


def parse_nail_values(text: str | None) -> tuple[int | tuple[int, int, int], ...] | None:
    """Parse ``--nail_values``: comma-separated integers (0..65535) and/or ``#rrggbb`` colours.

    Raises:
        ValueError: an entry is neither; the message names the flag.
    """
    if text is None or not str(text).strip():
        return None
    values: list[int | tuple[int, int, int]] = []
    for entry in str(text).split(","):
        entry = entry.strip()
        try:
            if entry.startswith("#") and len(entry) == 7:
                values.append(tuple(int(entry[i : i + 2], 16) for i in (1, 3, 5)))
                continue
            value = int(entry)
        except ValueError:
            value = -1
        if not 0 <= value <= 65535:
            raise ValueError(
                f"--nail_values must list mask values (integers 0..65535) or colours (#rrggbb), "
                f"comma-separated, e.g. '1' or '2,3' or '#ff0000'; got {text!r}"
            )
        values.append(value)
    return tuple(values)


def mask_to_labels(
    mask: Image.Image,
    nail_values: tuple[int | tuple[int, int, int], ...] | None = None,
    return_convention: bool = False,
):
    """Turn a mask of any PIL mode into a ``uint8`` label map: 0 background, 1 nail, 255 ignore.

    The values found decide how they are read (the table in this module's docstring);
    ``nail_values`` (see :func:`parse_nail_values`) replaces that decision. With
    ``return_convention``, returns ``(labels, name)``, the name one of ``MASK_CONVENTIONS``.

    Raises:
        MaskValuesError: the values match no convention (the message names them, not the file).
    """
    lossy = mask.format in _LOSSY_FORMATS  # read first: a turned copy has no format
    labels, convention = _mask_labels(_upright(mask, _orientation(mask)), nail_values, lossy)
    return (labels, convention) if return_convention else labels


def _mask_labels(
    mask: Image.Image, nail_values: tuple | None, lossy: bool = False
) -> tuple[np.ndarray, str]:
    colours = [v for v in nail_values or () if isinstance(v, tuple)]
    integers = [v for v in nail_values or () if not isinstance(v, tuple)]
    if mask.mode == "P":
        indices = np.asarray(mask)
        if integers or (not colours and _index_convention(_present(indices)) is not None):
            return _read_values(indices, integers)
        mask = mask.convert("RGBA")
    if mask.mode in ("1", "L", "I", "I;16", "I;16B", "I;16L", "I;16N", "F"):
        if colours:
            raise MaskValuesError(_mixed_hint("a grey or index mask", "integers"))
        return _read_values(np.asarray(mask), integers)
    rgb = _premultiplied_rgb(mask)
    if (rgb[..., 0] == rgb[..., 1]).all() and (rgb[..., 1] == rgb[..., 2]).all():
        if colours:
            raise MaskValuesError(_mixed_hint("a grey mask stored as colour", "integers"))
        return _read_values(rgb[..., 0], integers)
    if integers:
        raise MaskValuesError(_mixed_hint("a colour mask", "colours such as #ff0000"))
    return _read_colours(rgb, colours, lossy)


def _mixed_hint(kind: str, wanted: str) -> str:
    return f"is {kind}, so --nail_values must list {wanted} for it"


def _premultiplied_rgb(mask: Image.Image) -> np.ndarray:
    """(H, W, 3) uint8 colours, with any alpha multiplied in (transparent reads as black)."""
    if mask.mode in ("RGBA", "LA", "PA", "La", "RGBa"):
        rgba = np.asarray(mask.convert("RGBA")).astype(np.uint16)
        return ((rgba[..., :3] * rgba[..., 3:] + 127) // 255).astype(np.uint8)
    return np.asarray(mask.convert("RGB"))


def _present(values: np.ndarray) -> np.ndarray:
    """The distinct values of a non-negative integer array, sorted, without sorting its pixels.

    Most masks hold two values, which min, max and two counts establish; otherwise a histogram
    (OpenCV's for 8-bit masks: several times faster than ``np.bincount`` at 12 MP).
    """
    if values.size == 0:
        return np.zeros(0, dtype=np.int64)
    low, high = int(values.min()), int(values.max())
    if low == high or np.count_nonzero(values != low) == np.count_nonzero(values == high):
        return np.unique(np.array([low, high], dtype=np.int64))
    if values.dtype == np.uint8:
        import cv2

        histogram = cv2.calcHist([np.ascontiguousarray(values)], [0], None, [256], [0, 256])
        return np.flatnonzero(histogram.ravel())
    return np.flatnonzero(np.bincount(values.ravel()))


def _index_convention(present: np.ndarray) -> str | None:
    """The convention of a set of integer values that needs no grey levels, or None."""
    found = set(present.tolist())
    if found <= {0}:
        return "0"
    if found <= {0, 1}:
        return "0/1"
    if found <= {0, 1, 255} and {1, 255} <= found:
        return "0/1/255"
    if found == {0, 255}:
        return "0/255"
    return None


def _read_values(values: np.ndarray, nail_values: list[int]) -> tuple[np.ndarray, str]:
    """Labels of a single-channel mask (grey levels or class indices)."""
    values = np.asarray(values)
    if values.dtype == bool:
        values = values.astype(np.uint8)
    if values.dtype.kind == "f":
        if values.size and bool(np.all(np.mod(values, 1) == 0)) and values.min() >= 0:
            values = values.astype(np.int64)
        elif values.size and values.min() >= 0 and values.max() <= 1:
            return (values >= 0.5).astype(np.uint8), "soft"
        else:
            low, high = (float(values.min()), float(values.max())) if values.size else (0, 0)
            raise MaskValuesError(
                f"holds float values from {low:g} to {high:g}: neither 0..1 (soft masks) nor "
                "integer labels; save it as an 8-bit mask with 0 = background and 255 = nail"
            )
    if values.dtype.kind == "i" and values.size and (values.min() < 0 or values.max() > 65535):
        raise MaskValuesError(
            f"holds values from {values.min()} to {values.max()}, outside 0..65535; save it as "
            "an 8-bit mask with 0 = background and 255 = nail"
        )
    present = _present(values)
    if nail_values:
        lut = np.zeros(max(int(present.max(initial=0)), IGNORE_INDEX) + 1, dtype=np.uint8)
        lut[IGNORE_INDEX] = IGNORE_INDEX
        lut[[v for v in nail_values if v < len(lut)]] = NAIL
        return lut[values], "nail_values"
    convention = _index_convention(present)
    if convention in ("0", "0/1", "0/1/255"):
        return values.astype(np.uint8, copy=False), convention  # already our labels
    found = ", ".join(str(v) for v in present[:12]) + (", ..." if len(present) > 12 else "")
    if present.tolist() == [255]:
        raise MaskValuesError(
            "holds only the value 255: all nail in a 0/255 mask, or all ignored in a 0/1/255 "
            "mask; fix the mask, or say which with --nail_values 255 (255 = nail) or "
            "--nail_values 1 (255 = ignore)"
        )
    full = 255 if present.max(initial=0) <= 255 else 65535
    greys = present[(present > _LARGEST_CLASS_INDEX) & (present < full)]
    if full in present and (set(present.tolist()) <= {0, full} or greys.size):
        if 1 in present and np.count_nonzero(_inner(values == 1)) * 20 > np.count_nonzero(values):
            # Anti-aliasing and JPEG noise leave 1s only at edges, a pixel or two wide; regions
            # of 1s are the nails of a 0/1/255 mask that was resized with interpolation.
            raise MaskValuesError(
                f"holds the values {{{found}}}, over 5% of its non-zero pixels exactly 1: it "
                "looks like a 0/1/255 mask resized with interpolation; re-export it with "
                "nearest-neighbour resizing, or pass --nail_values"
            )
        return (values >= (full + 1) // 2).astype(np.uint8), "0/255"
    raise MaskValuesError(
        f"holds the values {{{found}}}, which match no mask convention (0/1; 0/255 with grey "
        "edges; 0/1/255 with 255 ignored); pass --nail_values with the value(s) that mean nail, "
        "e.g. --nail_values 2"
    )


def _inner(region: np.ndarray) -> np.ndarray:
    """The pixels of a boolean map whose eight neighbours are all in it too."""
    import cv2

    return cv2.erode(region.astype(np.uint8), np.ones((3, 3), np.uint8), borderValue=0) > 0


def _hex(rgb) -> str:
    return "#{:02x}{:02x}{:02x}".format(*(int(v) for v in rgb))


def _read_colours(rgb: np.ndarray, nail_colours: list[tuple[int, int, int]], lossy: bool):
    """Labels of a colour mask: black and one colour (with its anti-aliased blends)."""
    if lossy:
        return _read_lossy_colours(rgb, nail_colours)
    packed = (rgb[..., 0].astype(np.uint32) << 16) | (rgb[..., 1].astype(np.uint32) << 8)
    packed |= rgb[..., 2]
    if nail_colours:
        wanted = np.array([(r << 16) | (g << 8) | b for r, g, b in nail_colours], dtype=np.uint32)
        return np.isin(packed, wanted).astype(np.uint8), "nail_values"
    lit = packed[packed != 0]  # nails are a few % of a photo: look only at coloured pixels
    if lit.size == 0:
        return np.zeros(rgb.shape[:2], dtype=np.uint8), "0"
    colours, counts = np.unique(lit, return_counts=True)
    triples = np.stack([(colours >> 16) & 255, (colours >> 8) & 255, colours & 255], -1)
    brightness = triples.max(axis=1)
    # The mask's colour: the brightest, and among those the most frequent.
    top = np.flatnonzero(brightness == brightness.max())
    colour = triples[top[np.argmax(counts[top])]].astype(np.float64)
    expected = brightness[:, None] / colour.max() * colour
    stray = np.abs(triples - expected).max(axis=1) > _BLEND_TOLERANCE
    if stray.any():
        shown = ", ".join(_hex(t) for t in triples[np.argsort(-counts)][:6].tolist())
        raise MaskValuesError(
            f"holds several colours ({shown}{', ...' if len(colours) > 6 else ''}): a mask of "
            "several classes; pass the nail colour(s) with --nail_values, e.g. --nail_values "
            f"{_hex(colour)}"
        )
    value = rgb.max(axis=-1)
    half = (colour.max() + 1) / 2
    return (value >= half).astype(np.uint8), "colour"


def _read_lossy_colours(rgb: np.ndarray, nail_colours: list) -> tuple[np.ndarray, str]:
    """Labels of a colour mask saved as JPEG, whose compression moved its colours.

    A pixel is nail when it lies at least half-way from black to the nail colour and within
    ``3 * _LOSSY_TOLERANCE`` levels of that line (edges where JPEG subsampled the colour). The
    nail colour is ``nail_colours``' (any of them), else the most frequent one inside flat
    regions, which keep their colour; the mask is then refused as one of several classes where
    other colours fill regions of their own.
    """
    lit = rgb.max(axis=-1) > _LOSSY_TOLERANCE  # JPEG leaves near-black noise around shapes
    labels = np.zeros(rgb.shape[:2], dtype=np.uint8)
    if not lit.any():
        return labels, "nail_values" if nail_colours else "0"
    colours, inverse = np.unique(rgb[lit], axis=0, return_inverse=True)
    colours = colours.astype(np.float64)
    inverse = inverse.ravel()

    def off_and_along(colour: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        along = colours @ colour / colour.dot(colour)  # 0 at black, 1 at the colour
        return np.abs(colours - np.clip(along, 0, 1)[:, None] * colour).max(axis=1), along

    def near(colour: np.ndarray) -> np.ndarray:
        off, along = off_and_along(colour)
        return (along >= 0.5) & (off <= 3 * _LOSSY_TOLERANCE)

    if nail_colours:
        nail = np.logical_or.reduce([near(np.array(c, dtype=np.float64)) for c in nail_colours])
        labels[lit] = nail[inverse]
        return labels, "nail_values"
    flat = _inner(lit)
    found, counts = np.unique(rgb[flat if flat.any() else lit], axis=0, return_counts=True)
    colour = found[np.argmax(counts)].astype(np.float64)
    other = np.zeros(lit.shape, dtype=bool)
    other[lit] = (off_and_along(colour)[0] > _LOSSY_TOLERANCE)[inverse]
    regions = _inner(other)
    if np.count_nonzero(regions) > _LOSSY_STRAY_SHARE * np.count_nonzero(lit):
        found, counts = np.unique(rgb[regions], axis=0, return_counts=True)
        raise MaskValuesError(
            f"is a JPEG holding regions of {_hex(colour)} and of "
            f"{_hex(found[np.argmax(counts)])}: a mask of several classes; pass the nail "
            f"colour with --nail_values, e.g. --nail_values {_hex(colour)}"
        )
    labels[lit] = near(colour)[inverse]
    return labels, "colour"


def class_ids_to_labels(label: Image.Image, nail_values: tuple | None = None) -> np.ndarray:
    """Turn a dataset's label map of class ids into a ``uint8`` label map (0, 1 and 255).

    Datasets store class ids, not drawn masks (the transformers semantic-segmentation example's
    sets, and those :mod:`~nail_segformer.data.hub_dataset` writes): 0 background, 1 nail, 255
    ignored, read as they are, never by the value conventions of mask files (which would read a
    label of 0 and 255 as nail). With ``nail_values``, exactly the listed ids are nail, 255
    stays ignored unless listed, and every other id is background.

    Raises:
        MaskValuesError: a colour label, colours in ``nail_values``, or ids other than 0, 1 and
            255 without ``nail_values`` (the message lists the ids found).
    """
    if any(isinstance(v, tuple) for v in nail_values or ()):
        raise MaskValuesError(_mixed_hint("a label of class ids", "class ids (integers)"))
    if label.mode not in ("L", "P", "I", "I;16", "I;16B", "I;16L", "I;16N"):
        raise MaskValuesError(
            f"is a {label.mode} image; a dataset's labels are one class id per pixel (a grey "
            "or palette image)"
        )
    ids = np.asarray(_upright(label, _orientation(label)))
    if nail_values is None:
        found = _present(ids)
        if not set(found.tolist()) <= {0, NAIL, IGNORE_INDEX}:
            raise MaskValuesError(
                f"holds class ids {', '.join(map(str, found.tolist()))}, not only 0 "
                "(background), 1 (nail) and 255 (ignored): pass the nail's class id(s) with "
                "--nail_values"
            )
        return ids.astype(np.uint8)
    return _read_values(ids, list(nail_values))[0]  # as --nail_values reads a mask file's


def load_labels(
    path: str | os.PathLike,
    nail_values: tuple[int | tuple[int, int, int], ...] | None = None,
    return_convention: bool = False,
    class_ids: bool = False,
):
    """Decode a mask file into a ``uint8`` label map (0, 1 and 255; see :func:`mask_to_labels`).

    With ``return_convention``, returns ``(labels, name)`` of the convention it was read by.
    With ``class_ids``, the file is a dataset's label of class ids, read by
    :func:`class_ids_to_labels` (convention ``class ids``).

    Raises:
        ImageReadError: the file is missing, truncated or not an image.
        MaskValuesError: its values match no convention; the message names file and values.
    """
    try:
        with _open_image(path, "mask") as im:
            im.load()
            if class_ids:
                labels = class_ids_to_labels(im, nail_values)
                return (labels, "class ids") if return_convention else labels
            return mask_to_labels(im, nail_values, return_convention)
    except MaskValuesError as err:
        raise MaskValuesError(f"mask {portable_path(path)} {err}") from None
    except ImageReadError:
        raise
    except _ERRORS as err:
        raise ImageReadError(f"cannot decode mask {portable_path(path)}: {err}") from err
