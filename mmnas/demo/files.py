"""What the demo generators share: byte-for-byte reproducible `.npz` files, atomic writes, and their command line's
ending."""
from __future__ import annotations

import io
import os
import sys
import zipfile
from pathlib import Path
from typing import Callable

import numpy as np


def npz_bytes(arrays: dict[str, np.ndarray]) -> bytes:
    """An uncompressed .npz with fixed zip timestamps and attributes: np.savez stamps the current time, which would
    make every run's bytes differ."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_STORED) as archive:
        for name, array in arrays.items():
            info = zipfile.ZipInfo(name + ".npy", date_time=(1980, 1, 1, 0, 0, 0))
            info.compress_type = zipfile.ZIP_STORED
            info.create_system = 3  # fixed, so bytes match across operating systems too
            info.external_attr = 0o644 << 16
            payload = io.BytesIO()
            np.lib.format.write_array(payload, np.asarray(array), allow_pickle=False)
            archive.writestr(info, payload.getvalue())
    return buffer.getvalue()


def write_bytes_atomic(path: Path, data: bytes) -> None:
    """Temporary file + rename: a crash never leaves a truncated file under the final name. (No fsync, unlike
    mmnas.fileio: demo data are regenerated when their DONE marker is missing, and thousands of fsyncs are slow.)"""
    temporary = path.with_name(f".{path.name}.tmp{os.getpid()}")
    with open(temporary, "wb") as handle:
        handle.write(data)
    os.replace(temporary, path)


def run_generator(generate: Callable[[], Path]) -> int:
    """A generator CLI's ending: print the dataset root (exit 0), or the error's one paragraph (exit 2, as every CLI of
    the project: docs/errors.md)."""
    try:
        root = generate()
    except (ValueError, OSError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(root)
    return 0
