"""``DeviceArray``: a C-contiguous array in device memory that asps allocates through the CUDA
driver, for callers without a CUDA array library (and for tests that need no torch). It
exposes ``__cuda_array_interface__`` (version 3, no stream: its copies are synchronous), so
CuPy, Numba or ``torch.as_tensor`` can take it without a copy, and it copies to and from NumPy.
"""

from __future__ import annotations

from typing import Optional

import numpy as np

from . import _asps

_DTYPES = {"float32": np.float32, "float16": np.float16, "bfloat16": np.uint16,
           "int32": np.int32, "int64": np.int64, "uint64": np.uint64}
_TYPESTR = {"float32": "<f4", "float16": "<f2", "int32": "<i4", "int64": "<i8",
            "uint64": "<u8"}


class DeviceArray:
    """A zeroed C-contiguous array of ``shape`` and ``dtype`` (a name: float32, float16,
    bfloat16, int32, int64 or uint64) on CUDA device ``device``. Its memory is freed when it is
    collected, after the device has finished all work queued on it."""

    def __init__(self, shape, dtype: str, device: int = 0):
        if dtype not in _DTYPES:
            raise TypeError(f"dtype {dtype!r}: one of {', '.join(_DTYPES)}")
        self.shape = tuple(int(s) for s in shape)
        if any(s < 0 for s in self.shape):
            raise ValueError(f"shape {self.shape}")
        self.dtype = dtype
        size = int(np.prod(self.shape, dtype=np.int64))
        self._buffer = _asps.DeviceBuffer(device, max(size, 1) * np.dtype(_DTYPES[dtype]).itemsize)
        strides, step = [], 1
        for s in reversed(self.shape):
            strides.insert(0, step)
            step *= s
        self.strides = tuple(strides)  # in elements

    @classmethod
    def from_numpy(cls, array, dtype: Optional[str] = None, device: int = 0) -> "DeviceArray":
        """A device copy of ``array``. ``dtype="bfloat16"`` takes an array of uint16 bit
        patterns (NumPy has no bfloat16); otherwise the array's own dtype is kept."""
        a = np.ascontiguousarray(array)
        if dtype is None:
            dtype = a.dtype.name
        if dtype == "bfloat16" and a.dtype != np.uint16:
            raise TypeError("bfloat16 from uint16 bit patterns only")
        if dtype not in _DTYPES or np.dtype(_DTYPES[dtype]) != a.dtype:
            raise TypeError(f"an array of {a.dtype.name} as {dtype}")
        out = cls(a.shape, dtype, device)
        if a.size:
            out._buffer.upload(a.tobytes())
        return out

    def numpy(self) -> np.ndarray:
        """A host copy, taken after all work queued on the device has finished (bfloat16 as
        uint16 bit patterns)."""
        data = self._buffer.download()
        size = int(np.prod(self.shape, dtype=np.int64))
        return np.frombuffer(data, dtype=_DTYPES[self.dtype], count=size).reshape(self.shape).copy()

    @property
    def ptr(self) -> int:
        return self._buffer.ptr

    @property
    def device(self) -> int:
        return self._buffer.device

    @property
    def __cuda_array_interface__(self) -> dict:
        if self.dtype not in _TYPESTR:
            raise TypeError("__cuda_array_interface__ has no type string for bfloat16")
        return {"shape": self.shape, "typestr": _TYPESTR[self.dtype], "data": (self.ptr, False),
                "strides": None, "version": 3, "stream": None}

    def __repr__(self) -> str:
        return f"DeviceArray(shape={self.shape}, dtype={self.dtype!r}, device={self.device})"
