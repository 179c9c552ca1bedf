"""``.npy`` files read with the standard library: what a cold ``find`` needs without importing numpy.

Importing numpy is a large part of a cold ``find`` (docs/decisions.md). ``find`` reads a handful of
rows and slices of the index's arrays (postings of the query's tokens, one neuron's top tokens, one
word's neighbours), so a ``struct`` reader over the file's bytes is all it needs. Only the simple,
C-ordered, little-endian numeric arrays that ``atomic.save_npy_atomic`` writes are supported.
"""

from __future__ import annotations

import mmap
import re
import struct
from pathlib import Path
from typing import Any

from neurosearch.format.manifest import IndexError_

_FORMATS = {"i1": "b", "u1": "B", "i2": "h", "u2": "H", "i4": "i", "u4": "I", "i8": "q", "u8": "Q",
            "f2": "e", "f4": "f", "f8": "d", "b1": "?"}
_HEADER = re.compile(r"'descr':\s*'([<>|=])(\w\d+)'.*'fortran_order':\s*(True|False).*'shape':\s*\(([^)]*)\)", re.S)


class NpyFile:
    """One ``.npy`` file, memory-mapped: ``shape``, and typed rows or flat slices as tuples."""

    def __init__(self, path: Path):
        self.path = Path(path)
        try:  # mapped, not read: a query needs a few rows of files up to a few MB
            with open(self.path, "rb") as handle:
                data = mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ)
        except (OSError, ValueError) as exc:  # ValueError: an empty file cannot be mapped
            raise IndexError_(f"corrupt index file {self.path}: {getattr(exc, 'strerror', None) or exc}") from None
        if data[:6] != b"\x93NUMPY" or len(data) < 10:
            raise self._corrupt("not an .npy file")
        major = data[6]
        if major == 1:
            header_length, start = struct.unpack_from("<H", data, 8)[0], 10
        else:
            header_length, start = struct.unpack_from("<I", data, 8)[0], 12
        found = _HEADER.search(bytes(data[start : start + header_length]).decode("latin-1"))
        if not found:
            raise self._corrupt("unreadable header")
        order, kind, fortran, shape = found.groups()
        if kind not in _FORMATS or fortran == "True" or (order == ">" and kind[1:] != "1"):
            raise self._corrupt(f"unsupported array type {order}{kind}")
        self.shape = tuple(int(n) for n in shape.replace(",", " ").split())
        self.code = _FORMATS[kind]
        self.itemsize = int(kind[1:])
        self.size = 1
        for n in self.shape:
            self.size *= n
        self._data = data
        self._offset = start + header_length
        if len(data) - self._offset != self.size * self.itemsize:
            raise self._corrupt(f"{len(data) - self._offset} data bytes for shape {self.shape}")

    def _corrupt(self, why: str) -> IndexError_:
        return IndexError_(f"corrupt index file {self.path}: {why}")

    @property
    def row_length(self) -> int:
        length = 1
        for n in self.shape[1:]:
            length *= n
        return length

    def flat(self, start: int, stop: int) -> tuple:
        """Elements ``start:stop`` of the flattened array."""
        start, stop = max(0, start), min(stop, self.size)
        if stop <= start:
            return ()
        return struct.unpack_from(f"<{stop - start}{self.code}", self._data, self._offset + start * self.itemsize)

    def row(self, index: int) -> tuple:
        """Row ``index`` of a 2-D array (element ``index`` of a 1-D one), flattened."""
        if not 0 <= index < self.shape[0]:
            raise IndexError(f"row {index} of {self.shape[0]}")
        length = self.row_length
        return self.flat(index * length, (index + 1) * length)

    def __getitem__(self, item: int | slice) -> Any:
        """Flat elements and slices (``table[i]``, ``table[a:b]``), as numpy arrays give them."""
        if not isinstance(item, slice):
            index = item + self.size if item < 0 else item
            if not 0 <= index < self.size:
                raise IndexError(f"element {item} of {self.size}")
            return self.flat(index, index + 1)[0]
        start, stop, step = item.indices(self.size)
        if step != 1:
            raise ValueError("NpyFile slices take no step")
        return self.flat(start, stop)

    def __len__(self) -> int:
        return self.shape[0] if self.shape else 1

    def tolist(self) -> list:
        return list(self.flat(0, self.size))
