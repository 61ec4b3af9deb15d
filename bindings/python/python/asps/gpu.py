"""``asps.verify``: the crate's GPU verification on the caller's CUDA arrays and stream."""

from __future__ import annotations

import enum
import sys
from typing import Any, NamedTuple, Optional

from . import _arrays, _asps
from .device_array import DeviceArray

_METHODS = ("asps", "sps", "greedy")
_LOGITS = ("float32", "float16", "bfloat16")


class RequestStatus(enum.IntEnum):
    """A request's outcome (``AspsRequestStatus`` in include/asps.h). Anything but ``OK``
    leaves the request's outputs at ``-1`` / ``0``: that request emitted nothing."""

    OK = 0
    NAN = 1
    POS_INF = 2
    ALL_MASKED = 3
    TOKEN_OUT_OF_RANGE = 4
    IMPOSSIBLE_DRAFT_TOKEN = 5
    BAD_DRAFT_LEN = 6
    BAD_TEMPERATURE = 7
    NO_OUTCOME = 8
    BAD_TRUNCATION = 9
    BAD_TREE = 10


class Verified(NamedTuple):
    """What a call emits, as device arrays of the inputs' kind (torch tensors for torch
    inputs, else ``asps.DeviceArray``), all int32: ``tokens[b, :num_emitted[b]]`` are request
    b's kept draft tokens and then one more (the rest -1), ``num_accepted[b]`` the draft tokens
    kept, ``status[b]`` a :class:`RequestStatus`."""

    tokens: Any
    num_emitted: Any
    num_accepted: Any
    status: Any


def gpu_error() -> Optional[str]:
    """Why ``asps.verify`` cannot run here (no driver, no device, a build without kernels), or
    None when it can."""
    return _asps.gpu_error(0)


def _stream_handle(stream) -> int:
    if isinstance(stream, int):
        return stream
    for attr in ("cuda_stream", "ptr", "handle"):  # torch, CuPy, cuda-python
        h = getattr(stream, attr, None)
        if isinstance(h, int):
            return h
    raise TypeError(f"stream: a {type(stream).__name__}; an int handle or a stream object with "
                    ".cuda_stream (torch) or .ptr (CuPy)")


def _param(name: str, x, batch: int, dtype: str, stream: int):
    """A per-request parameter as the extension takes it (None: off; ``("value", x)``: one
    number for all; ``("array", address)``), and the array's view if it is one."""
    if x is None:
        return None, None
    if isinstance(x, bool):
        raise TypeError(f"{name}: a bool")
    if isinstance(x, (int, float)):
        if dtype != "float32":
            if not isinstance(x, int):
                raise TypeError(f"{name}: {x!r}; an int")
            low, high = (0, 2**64) if dtype == "uint64" else (-2**31, 2**31)
            if not low <= x < high:
                raise ValueError(f"{name}: {x} is outside {low}..{high}")
        return ("value", x), None
    v = _arrays.view(name, x, stream)
    allowed = ("int64", "uint64") if dtype == "uint64" else (dtype,)
    if v.dtype not in allowed:
        raise TypeError(f"{name}: an array of {v.dtype}; {' or '.join(allowed)} expected")
    if v.shape != (batch,) or (batch > 1 and v.strides[0] != 1):
        raise ValueError(f"{name}: shape {v.shape}, strides {v.strides}; a contiguous array of "
                         f"the batch's {batch} requests expected")
    return ("array", v.ptr), v


def verify(target_logits, draft_logits, draft_tokens, *, method: str = "asps",
           temperature=1.0, draft_temperature=None, top_k=None, top_p=None, min_p=None,
           draft_top_k=None, draft_top_p=None, draft_min_p=None, draft_lens=None,
           seed=0, offset=0, stream=None, device: Optional[int] = None) -> Verified:
    """Verifies a batch of B drafts on the GPU: which draft tokens each request keeps, and the
    token after them, distributed exactly as the target model alone samples.

    Arrays: ``target_logits`` ``[B, n + 1, V]`` (the target's rows after each draft prefix),
    ``draft_logits`` ``[B, n, V]`` (the rows the draft tokens were drawn from), both float32,
    float16 or bfloat16 of one dtype, rows contiguous (any batch and row strides);
    ``draft_tokens`` ``[B, n]`` int32, contiguous. Torch tensors, ``asps.DeviceArray``, or any
    CUDA array with ``__cuda_array_interface__`` or ``__dlpack__``; nothing is converted.

    Per request (one number for all, or a device array of B): ``temperature`` (0: greedy),
    ``draft_temperature`` (None: the target's; 0: a greedy drafter), each model's ``top_k``
    (int32), ``top_p``, ``min_p`` (float32; None: off), ``draft_lens`` (int32, 1..n; None: all
    n), ``seed`` and ``offset`` (int64 or uint64). A device array of offsets is advanced by one
    on the device, ready for the next call.

    Runs on ``stream`` (an int handle or a torch/CuPy stream); by default torch's current stream
    for torch tensors, else the stream ``target_logits``'s ``__cuda_array_interface__`` names,
    else the legacy default stream. Waits for the streams other arrays' producers name; never
    synchronises the host with the device, so the arrays must stay alive and unchanged until the
    stream has run the call. The first call on a stream, and a call larger than any before on
    it, allocates the verifier's workspace (and waits for the stream).

    ``device`` is the CUDA device of the call: by default the one ``target_logits`` is on
    (device 0 for a bare ``__cuda_array_interface__``, which does not say). Every array must be
    on it; the driver is asked where a ``__cuda_array_interface__`` address lives.

    Returns :class:`Verified`. Arguments that do not describe a call raise ``TypeError`` or
    ``ValueError`` with the crate's message and queue nothing; a request whose logits or
    parameters are bad gets its own status (:class:`RequestStatus`).
    """
    if method not in _METHODS:
        raise ValueError(f"method {method!r}: one of {', '.join(_METHODS)}")
    torch_call = _arrays.is_torch(target_logits)
    if stream is None:
        if torch_call:
            torch = sys.modules["torch"]
            handle = torch.cuda.current_stream(target_logits.device).cuda_stream
        elif isinstance(target_logits, DeviceArray):
            handle = 1
        else:
            cai = getattr(target_logits, "__cuda_array_interface__", None)
            handle = (cai or {}).get("stream") or 1
    else:
        handle = _stream_handle(stream)

    t = _arrays.view("target_logits", target_logits, handle)
    if device is None:
        device = t.device if t.device is not None else 0
    d = _arrays.view("draft_logits", draft_logits, handle)
    x = _arrays.view("draft_tokens", draft_tokens, handle)
    if t.dtype not in _LOGITS:
        raise TypeError(f"target_logits: dtype {t.dtype}; float32, float16 or bfloat16")
    if d.dtype != t.dtype:
        raise TypeError(f"draft_logits: dtype {d.dtype}, target_logits {t.dtype}; one dtype")
    if x.dtype != "int32":
        raise TypeError(f"draft_tokens: dtype {x.dtype}; int32 (torch: .int())")
    if len(t.shape) != 3 or len(d.shape) != 3 or len(x.shape) != 2:
        raise ValueError(f"target_logits {t.shape}, draft_logits {d.shape}, draft_tokens "
                         f"{x.shape}: [B, n + 1, V], [B, n, V] and [B, n] expected")
    batch, rows, vocab = t.shape
    n = rows - 1
    if d.shape != (batch, n, vocab) or x.shape != (batch, n):
        raise ValueError(f"target_logits {t.shape}, draft_logits {d.shape}, draft_tokens "
                         f"{x.shape}: [B, n + 1, V], [B, n, V] and [B, n] expected")
    for v in (t, d):
        if vocab > 1 and v.strides[2] != 1:
            raise ValueError(f"{v.name}: strides {v.strides}; each row must be contiguous")
    if n > 0 and (x.strides[1] != 1 or (batch > 1 and x.strides[0] != n)):
        raise ValueError(f"draft_tokens: strides {x.strides}; a contiguous [B, n] array")

    params = {
        "temperature": _param("temperature", temperature, batch, "float32", handle),
        "draft_temperature": _param("draft_temperature", draft_temperature, batch, "float32",
                                    handle),
        "top_k": _param("top_k", top_k, batch, "int32", handle),
        "top_p": _param("top_p", top_p, batch, "float32", handle),
        "min_p": _param("min_p", min_p, batch, "float32", handle),
        "draft_top_k": _param("draft_top_k", draft_top_k, batch, "int32", handle),
        "draft_top_p": _param("draft_top_p", draft_top_p, batch, "float32", handle),
        "draft_min_p": _param("draft_min_p", draft_min_p, batch, "float32", handle),
        "draft_lens": _param("draft_lens", n if draft_lens is None else draft_lens, batch,
                             "int32", handle),
        "seed": _param("seed", seed, batch, "uint64", handle),
        "offset": _param("offset", offset, batch, "uint64", handle),
    }
    if params["temperature"][0] is None:
        raise ValueError("temperature is required (0: greedy)")
    views = [t, d, x] + [v for _, v in params.values() if v is not None]
    call = {key: p for key, (p, _) in params.items()}
    for v in views:
        if v.device is not None and v.device != device:
            raise ValueError(f"{v.name}: on CUDA device {v.device}, the call on {device}")

    if torch_call:
        torch = sys.modules["torch"]
        def new(shape):
            return torch.empty(shape, dtype=torch.int32, device=target_logits.device)
    else:
        def new(shape):
            return DeviceArray(shape, "int32", device)
    out = Verified(new((batch, n + 1)), new((batch,)), new((batch,)), new((batch,)))
    outs = [_arrays.view(f"out.{f}", a, handle) for f, a in zip(Verified._fields, out)]
    waits = sorted({v.producer_stream for v in views
                    if v.producer_stream is not None and v.producer_stream != handle})
    unplaced = [(v.name, v.ptr) for v in views if v.device is None]
    call.update(
        device=device, stream=handle, wait_for=waits, unplaced=unplaced, method=method, dtype=t.dtype,
        batch=batch, max_draft=n, vocab=vocab,
        target=t.ptr, target_batch_stride=t.strides[0], target_row_stride=t.strides[1],
        draft=d.ptr, draft_batch_stride=d.strides[0], draft_row_stride=d.strides[1],
        draft_tokens=x.ptr, out_tokens=outs[0].ptr, out_num_emitted=outs[1].ptr,
        out_num_accepted=outs[2].ptr, out_status=outs[3].ptr,
    )
    _asps.gpu_verify(call)
    return out
