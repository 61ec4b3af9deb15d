"""What asps.verify reads from a caller's array: its device address, shape, strides (in
elements), dtype and device, from a torch tensor, an ``asps.DeviceArray``, any object with
``__cuda_array_interface__`` (version 2 or 3), or any object with ``__dlpack__``, in that
order of preference. Nothing is copied or converted: an array of another dtype, on the host or
on another device is refused with ``TypeError`` or ``ValueError``.
"""

from __future__ import annotations

import ctypes
import sys
from dataclasses import dataclass
from typing import Any, Optional

# DLPack's device types and dtype codes (dlpack.h).
_DL_CUDA, _DL_CUDA_MANAGED = 2, 13
_DL_INT, _DL_UINT, _DL_FLOAT, _DL_BFLOAT = 0, 1, 2, 4
_DL_DTYPES = {
    (_DL_FLOAT, 32): "float32", (_DL_FLOAT, 16): "float16", (_DL_BFLOAT, 16): "bfloat16",
    (_DL_INT, 32): "int32", (_DL_INT, 64): "int64", (_DL_UINT, 64): "uint64",
}
# __cuda_array_interface__'s type strings (NumPy's; bfloat16 has none).
_CAI_DTYPES = {"<f4": "float32", "<f2": "float16", "<i4": "int32", "<i8": "int64",
               "<u8": "uint64"}
_ITEMSIZE = {"float32": 4, "float16": 2, "bfloat16": 2, "int32": 4, "int64": 8, "uint64": 8}


@dataclass(frozen=True)
class View:
    """One array as the kernels see it."""

    name: str
    ptr: int
    shape: tuple[int, ...]
    strides: tuple[int, ...]  # in elements
    dtype: str
    # The CUDA device, when the array says (torch, DLPack, DeviceArray); None for
    # __cuda_array_interface__, whose address the driver is asked about instead.
    device: Optional[int]
    # The stream its producer last wrote it on (__cuda_array_interface__ version 3), which the
    # call waits for; None when the producer gave none.
    producer_stream: Optional[int] = None
    # Keeps a DLPack capsule (and so the producer's tensor) alive while the view is used.
    owner: Any = None
    # The producer forbids writes (__cuda_array_interface__'s data[1]).
    readonly: bool = False


def is_torch(x) -> bool:
    torch = sys.modules.get("torch")
    return torch is not None and isinstance(x, torch.Tensor)


def _torch_view(name: str, t) -> View:
    if not t.is_cuda:
        raise ValueError(f"{name}: a torch tensor on {t.device}; asps.verify takes CUDA tensors")
    dtype = str(t.dtype).removeprefix("torch.")
    if dtype not in _ITEMSIZE:
        raise TypeError(f"{name}: a torch tensor of dtype {t.dtype}")
    return View(name, t.data_ptr(), tuple(t.shape), tuple(t.stride()), dtype, t.device.index)


def _cai_view(name: str, cai: dict) -> View:
    typestr = cai["typestr"]
    dtype = _CAI_DTYPES.get(typestr)
    if dtype is None:
        raise TypeError(f"{name}: __cuda_array_interface__ of type {typestr!r}; one of "
                        f"{', '.join(_CAI_DTYPES)}")
    shape = tuple(int(s) for s in cai["shape"])
    size = _ITEMSIZE[dtype]
    if cai.get("strides") is None:
        strides, step = [], 1
        for s in reversed(shape):
            strides.insert(0, step)
            step *= s
    else:
        strides = []
        for s in cai["strides"]:
            if s % size:
                raise ValueError(f"{name}: a stride of {s} bytes, not a whole number of "
                                 f"{size}-byte elements")
            strides.append(s // size)
    ptr, readonly = int(cai["data"][0]), bool(cai["data"][1])
    if cai.get("mask") is not None:
        raise ValueError(f"{name}: a masked __cuda_array_interface__")
    stream = cai.get("stream")
    if stream == 0:
        raise ValueError(f"{name}: __cuda_array_interface__ stream 0 (ambiguous: 1 names the "
                         "legacy default stream, 2 the per-thread one)")
    return View(name, ptr, shape, tuple(strides), dtype, None, stream, readonly=readonly)


class _DLDevice(ctypes.Structure):
    _fields_ = [("device_type", ctypes.c_int), ("device_id", ctypes.c_int)]


class _DLDataType(ctypes.Structure):
    _fields_ = [("code", ctypes.c_uint8), ("bits", ctypes.c_uint8), ("lanes", ctypes.c_uint16)]


class _DLTensor(ctypes.Structure):
    _fields_ = [("data", ctypes.c_void_p), ("device", _DLDevice), ("ndim", ctypes.c_int),
                ("dtype", _DLDataType), ("shape", ctypes.POINTER(ctypes.c_int64)),
                ("strides", ctypes.POINTER(ctypes.c_int64)), ("byte_offset", ctypes.c_uint64)]


_capsule_pointer = ctypes.pythonapi.PyCapsule_GetPointer
_capsule_pointer.restype = ctypes.c_void_p
_capsule_pointer.argtypes = [ctypes.py_object, ctypes.c_char_p]


def _dlpack_view(name: str, x, stream: int) -> View:
    device_type, device_id = x.__dlpack_device__()
    if device_type not in (_DL_CUDA, _DL_CUDA_MANAGED):
        raise ValueError(f"{name}: a DLPack array on device type {device_type}; asps.verify "
                         "takes CUDA arrays")
    # The producer orders its pending writes before work on `stream` (the DLPack protocol,
    # where 1 names the legacy default stream, which is torch's handle 0).
    capsule = x.__dlpack__(stream=stream or 1)
    # An unversioned capsule (no max_version asked): a DLManagedTensor, whose first member is
    # the DLTensor. The capsule keeps its name, so its destructor calls the producer's deleter
    # once it is collected, after the call.
    t = _DLTensor.from_address(_capsule_pointer(capsule, b"dltensor"))
    dtype = _DL_DTYPES.get((t.dtype.code, t.dtype.bits))
    if dtype is None or t.dtype.lanes != 1:
        raise TypeError(f"{name}: a DLPack array of dtype code {t.dtype.code}, "
                        f"{t.dtype.bits} bits, {t.dtype.lanes} lanes")
    shape = tuple(t.shape[i] for i in range(t.ndim))
    if t.strides:
        strides = tuple(t.strides[i] for i in range(t.ndim))
    else:
        strides, step = [], 1
        for s in reversed(shape):
            strides.insert(0, step)
            step *= s
        strides = tuple(strides)
    return View(name, (t.data or 0) + t.byte_offset, shape, strides, dtype, device_id,
                owner=capsule)


def view(name: str, x, stream: int) -> View:
    """The view of ``x``; ``stream`` is the call's (for DLPack's handshake)."""
    from .device_array import DeviceArray

    if is_torch(x):
        return _torch_view(name, x)
    if isinstance(x, DeviceArray):
        return View(name, x.ptr, x.shape, x.strides, x.dtype, x.device)
    if hasattr(x, "__cuda_array_interface__"):
        return _cai_view(name, x.__cuda_array_interface__)
    if hasattr(x, "__dlpack__") and hasattr(x, "__dlpack_device__"):
        return _dlpack_view(name, x, stream)
    raise TypeError(f"{name}: a {type(x).__name__}; asps.verify takes CUDA arrays (torch "
                    "tensors, asps.DeviceArray, __cuda_array_interface__ or DLPack)")
