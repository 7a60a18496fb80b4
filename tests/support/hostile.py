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
