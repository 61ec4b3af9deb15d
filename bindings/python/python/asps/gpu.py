"""``asps.verify`` and ``asps.verify_tree``: the crate's GPU verification on the caller's CUDA
arrays and stream."""

from __future__ import annotations

import enum
import numbers
import sys
from typing import Any, NamedTuple, Optional

from . import _arrays, _asps
from .device_array import DeviceArray

_METHODS = ("asps", "sps", "greedy")
_RULES = ("tv", "rrs")
_SIBLING_LAWS = {"without_replacement": 0, "with_replacement": 1, "deterministic": 2}
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
    """What :func:`verify` emits, as device arrays of the inputs' kind (torch tensors for torch
    inputs, else ``asps.DeviceArray``), all int32: ``tokens[b, :num_emitted[b]]`` are request
    b's kept draft tokens and then one more (the rest -1), ``num_accepted[b]`` the draft tokens
    kept, ``status[b]`` a :class:`RequestStatus`."""

    tokens: Any
    num_emitted: Any
    num_accepted: Any
    status: Any


class VerifiedTree(NamedTuple):
    """What :func:`verify_tree` emits (device arrays as :class:`Verified`'s, all int32, [B]):
    ``node[b]`` the accepted node (0: the root, no draft token kept), ``token[b]`` the token
    after its path, ``num_emitted[b]`` its depth + 1, ``status[b]`` a :class:`RequestStatus`
    (-1, -1, 0 unless ``OK``)."""

    node: Any
    token: Any
    num_emitted: Any
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


class _Call:
    """One call's arrays and parameters, read from the caller's objects and checked, as the
    extension takes them (src/gpu/mod.rs, ``Common``)."""

    def __init__(self, target_logits, target_shape, stream, device):
        self.torch = _arrays.is_torch(target_logits)
        self.target_object = target_logits
        if stream is None:
            if self.torch:
                torch = sys.modules["torch"]
                stream = torch.cuda.current_stream(target_logits.device).cuda_stream
            elif isinstance(target_logits, DeviceArray):
                stream = 1
            else:
                cai = getattr(target_logits, "__cuda_array_interface__", None)
                stream = (cai or {}).get("stream") or 1
            self.explicit_stream = False
        else:
            stream = _stream_handle(stream)
            self.explicit_stream = True
        self.stream = stream
        self.views = []
        self.target = None
        self.target = self.logits("target_logits", target_logits, target_shape)
        if device is None:
            device = self.target.device if self.target.device is not None else 0
        self.device = device
        self.common = {}

    def view(self, name, x, writes=False):
        v = _arrays.view(name, x, self.stream)
        if writes and v.readonly:
            raise ValueError(f"{name}: a read-only array, which the call writes")
        self.views.append(v)
        return v

    def logits(self, name, x, shape_name):
        v = self.view(name, x)
        if v.dtype not in _LOGITS:
            raise TypeError(f"{name}: dtype {v.dtype}; float32, float16 or bfloat16")
        if self.target is not None and v.dtype != self.target.dtype:
            raise TypeError(f"{name}: dtype {v.dtype}, target_logits {self.target.dtype}; "
                            "one dtype")
        if len(v.shape) != 3:
            raise ValueError(f"{name}: shape {v.shape}; {shape_name} expected")
        if v.shape[2] > 1 and v.strides[2] != 1:
            raise ValueError(f"{name}: strides {v.strides}; each row must be contiguous")
        return v

    def packed_int32(self, name, x, shape):
        v = self.view(name, x)
        if v.dtype != "int32":
            raise TypeError(f"{name}: dtype {v.dtype}; int32 (torch: .int())")
        if v.shape != shape:
            raise ValueError(f"{name}: shape {v.shape}; {shape} expected")
        if shape[1] > 1 and v.strides[1] != 1 or shape[0] > 1 and v.strides[0] != shape[1]:
            raise ValueError(f"{name}: strides {v.strides}; a contiguous {shape} array")
        return v

    def param(self, name, x, batch, dtype, writes=False):
        """A per-request parameter: None (off), ``("value", x)`` (one number for all), or
        ``("array", address)`` (a device array of B)."""
        if x is None:
            return None
        if isinstance(x, bool):
            raise TypeError(f"{name}: a bool")
        if isinstance(x, numbers.Real):  # Python and NumPy numbers
            if dtype == "float32":
                return ("value", float(x))
            if not isinstance(x, numbers.Integral):
                raise TypeError(f"{name}: {x!r}; an integer")
            low, high = (0, 2**64) if dtype == "uint64" else (-2**31, 2**31)
            if not low <= int(x) < high:
                raise ValueError(f"{name}: {x} is outside {low}..{high}")
            return ("value", int(x))
        v = self.view(name, x, writes)
        allowed = ("int64", "uint64") if dtype == "uint64" else (dtype,)
        if v.dtype not in allowed:
            raise TypeError(f"{name}: an array of {v.dtype}; {' or '.join(allowed)} expected")
        if v.shape != (batch,) or (batch > 1 and v.strides[0] != 1):
            raise ValueError(f"{name}: shape {v.shape}, strides {v.strides}; a contiguous array "
                             f"of the batch's {batch} requests expected")
        return ("array", v.ptr)

    def sampling(self, batch, temperature, draft_temperature, top_k, top_p, min_p, draft_top_k,
                 draft_top_p, draft_min_p, seed, offset):
        if temperature is None:
            raise ValueError("temperature is required (0: greedy)")
        for name, x, dtype in [
                ("temperature", temperature, "float32"),
                ("draft_temperature", draft_temperature, "float32"),
                ("top_k", top_k, "int32"), ("top_p", top_p, "float32"),
                ("min_p", min_p, "float32"), ("draft_top_k", draft_top_k, "int32"),
                ("draft_top_p", draft_top_p, "float32"), ("draft_min_p", draft_min_p, "float32"),
                ("seed", seed, "uint64")]:
            self.common[name] = self.param(name, x, batch, dtype)
        self.common["offset"] = self.param("offset", offset, batch, "uint64", writes=True)

    def outputs(self, kind, shapes, out):
        """The call's outputs: ``out`` (checked), else made like the inputs: torch tensors on
        the call's stream for torch inputs, else DeviceArrays."""
        if out is not None:
            if not isinstance(out, tuple) or len(out) != len(kind._fields):
                raise TypeError(f"out: a {type(out).__name__}; a {kind.__name__} (or a tuple of "
                                f"{len(kind._fields)} int32 arrays: {', '.join(kind._fields)})")
            out = kind(*out)
            views = []
            for f, a, shape in zip(kind._fields, out, shapes):
                v = self.view(f"out.{f}", a, writes=True)
                if v.dtype != "int32" or v.shape != shape:
                    raise ValueError(f"out.{f}: {v.dtype} {v.shape}; int32 {shape} expected")
                packed = shape[-1] if len(shape) == 2 else 1
                if shape[-1] > 1 and v.strides[-1] != 1 or (
                        len(shape) == 2 and shape[0] > 1 and v.strides[0] != packed):
                    raise ValueError(f"out.{f}: strides {v.strides}; a contiguous array")
                views.append(v)
            return out, views
        if self.torch:
            torch = sys.modules["torch"]
            dev = self.target_object.device

            def make():
                return kind(*(torch.empty(s, dtype=torch.int32, device=dev) for s in shapes))
            if self.explicit_stream:
                # The caching allocator hands out blocks safe on its current stream: make it
                # the call's, which writes them.
                with torch.cuda.stream(torch.cuda.ExternalStream(self.stream, device=dev)):
                    out = make()
            else:
                out = make()
        else:
            out = kind(*(DeviceArray(s, "int32", self.device) for s in shapes))
        views = [self.view(f"out.{f}", a) for f, a in zip(kind._fields, out)]
        return out, views

    def finish(self, batch, vocab, draft, out_num_emitted, out_status):
        """The common description, once every array is read."""
        for v in self.views:
            if v.device is not None and v.device != self.device:
                raise ValueError(f"{v.name}: on CUDA device {v.device}, the call on "
                                 f"{self.device}")
        t = self.target
        self.common.update(
            device=self.device, stream=self.stream,
            wait_for=sorted({v.producer_stream for v in self.views
                             if v.producer_stream not in (None, self.stream)}),
            unplaced=[(v.name, v.ptr) for v in self.views if v.device is None],
            dtype=t.dtype, batch=batch, vocab=vocab,
            target=t.ptr, target_batch_stride=t.strides[0], target_row_stride=t.strides[1],
            draft=0 if draft is None else draft.ptr,
            draft_batch_stride=0 if draft is None else draft.strides[0],
            draft_row_stride=0 if draft is None else draft.strides[1],
            out_num_emitted=out_num_emitted.ptr, out_status=out_status.ptr)
        return self.common


_CONTRACT = """
    Runs on ``stream`` (an int handle or a torch/CuPy stream); by default torch's current stream
    for torch tensors, else the stream ``target_logits``'s ``__cuda_array_interface__`` names,
    else the legacy default stream. Waits (on the device) for the streams other arrays'
    producers name. The arrays must stay alive and unchanged until the stream has run the call.

    Outputs: ``out`` (int32 device arrays of the result's shapes, written in place), else new
    ones: torch tensors from torch's caching allocator for torch inputs, else DeviceArrays.
    The call never synchronises the host with the device, except where it allocates: a new
    DeviceArray (pass ``out`` to avoid it), and the first call on a stream or one larger than
    any before on it, which makes the verifier's workspace (make those calls before capturing
    a CUDA graph). Calls on one stream share one workspace, in stream order; so do the calls
    captured from one stream into CUDA graphs, whose replays must therefore not overlap each
    other or calls on that stream. A stream handle must name one stream for the life of the
    process (not a destroyed stream's handle reused while its work runs).

    ``device`` is the CUDA device of the call: by default the one ``target_logits`` is on
    (device 0 for a bare ``__cuda_array_interface__``, which does not say). Every array must be
    on it; the driver is asked where a ``__cuda_array_interface__`` address lives.

    Arguments that do not describe a call raise ``TypeError`` or ``ValueError`` with the crate's
    message and queue nothing on the stream; a request whose logits or parameters are bad gets
    its own status (:class:`RequestStatus`) and the others are verified.
"""

_SAMPLING = """
    Per request (one number for all, or a device array of B): ``temperature`` (0: greedy),
    ``draft_temperature`` (None: the target's; 0: a greedy drafter), each model's ``top_k``
    (int32), ``top_p``, ``min_p`` (float32; None: off), ``seed`` and ``offset`` (a number in
    0..2**64, or an int64 or uint64 array read as uint64). A device array of offsets is
    advanced by one on the device, ready for the next call.
"""


def verify(target_logits, draft_logits, draft_tokens, *, method: str = "asps",
           temperature=1.0, draft_temperature=None, top_k=None, top_p=None, min_p=None,
           draft_top_k=None, draft_top_p=None, draft_min_p=None, draft_lens=None,
           seed=0, offset=0, stream=None, device: Optional[int] = None,
           out: Optional[Verified] = None) -> Verified:
    if method not in _METHODS:
        raise ValueError(f"method {method!r}: one of {', '.join(_METHODS)}")
    call = _Call(target_logits, "[B, n + 1, V]", stream, device)
    t = call.target
    batch, rows, vocab = t.shape
    n = rows - 1
    d = call.logits("draft_logits", draft_logits, "[B, n, V]")
    if d.shape != (batch, n, vocab):
        raise ValueError(f"target_logits {t.shape}, draft_logits {d.shape}: [B, n + 1, V] and "
                         "[B, n, V] expected")
    x = call.packed_int32("draft_tokens", draft_tokens, (batch, n))
    call.sampling(batch, temperature, draft_temperature, top_k, top_p, min_p, draft_top_k,
                  draft_top_p, draft_min_p, seed, offset)
    lens = call.param("draft_lens", n if draft_lens is None else draft_lens, batch, "int32")
    out, (tokens, emitted, accepted, status) = call.outputs(
        Verified, [(batch, n + 1), (batch,), (batch,), (batch,)], out)
    common = call.finish(batch, vocab, d, emitted, status)
    _asps.gpu_verify(common, dict(
        method=method, max_draft=n, draft_tokens=x.ptr, draft_lens=lens, out_tokens=tokens.ptr,
        out_num_accepted=accepted.ptr))
    return out


verify.__doc__ = """Verifies a batch of B drafts on the GPU: which draft tokens each request
    keeps, and the token after them, distributed exactly as the target model alone samples.

    Arrays: ``target_logits`` ``[B, n + 1, V]`` (the target's rows after each draft prefix),
    ``draft_logits`` ``[B, n, V]`` (the rows the draft tokens were drawn from), both float32,
    float16 or bfloat16 of one dtype, rows contiguous (any batch and row strides);
    ``draft_tokens`` ``[B, n]`` int32, contiguous. Torch tensors, ``asps.DeviceArray``, or any
    CUDA array with ``__cuda_array_interface__`` or ``__dlpack__``; nothing is converted.
    ``method`` is ``"asps"``, ``"sps"`` or ``"greedy"``; ``draft_lens`` (one number or an int32
    array of B, 1..n; None: all n) makes a batch ragged.
""" + _SAMPLING + _CONTRACT + """
    Returns :class:`Verified`.
"""


def verify_tree(target_logits, parents, tokens, *, draft_logits=None, num_nodes=None,
                rule: str = "tv", sibling_law="without_replacement", temperature=1.0,
                draft_temperature=None, top_k=None, top_p=None, min_p=None, draft_top_k=None,
                draft_top_p=None, draft_min_p=None, seed=0, offset=0, stream=None,
                device: Optional[int] = None,
                out: Optional[VerifiedTree] = None) -> VerifiedTree:
    call = _Call(target_logits, "[B, N, V]", stream, device)
    t = call.target
    batch, max_nodes, vocab = t.shape
    p = call.packed_int32("parents", parents, (batch, max_nodes))
    x = call.packed_int32("tokens", tokens, (batch, max_nodes))
    d = None
    if draft_logits is not None:
        d = call.logits("draft_logits", draft_logits, "[B, N - 1, V]")
        if d.shape != (batch, max_nodes - 1, vocab):
            raise ValueError(f"target_logits {t.shape}, draft_logits {d.shape}: [B, N, V] and "
                             "[B, N - 1, V] expected")
    if rule not in _RULES:
        raise ValueError(f"rule {rule!r}: one of {', '.join(_RULES)}")
    if isinstance(sibling_law, str):
        if sibling_law not in _SIBLING_LAWS:
            raise ValueError(f"sibling_law {sibling_law!r}: one of {', '.join(_SIBLING_LAWS)}")
        sibling_law = _SIBLING_LAWS[sibling_law]
    call.sampling(batch, temperature, draft_temperature, top_k, top_p, min_p, draft_top_k,
                  draft_top_p, draft_min_p, seed, offset)
    laws = call.param("sibling_law", sibling_law, batch, "int32")
    nodes = call.param("num_nodes", max_nodes if num_nodes is None else num_nodes, batch,
                       "int32")
    out, (node, token, emitted, status) = call.outputs(VerifiedTree, [(batch,)] * 4, out)
    common = call.finish(batch, vocab, d, emitted, status)
    _asps.gpu_verify_tree(common, dict(
        rule=rule, max_nodes=max_nodes, num_nodes=nodes, parents=p.ptr, tokens=x.ptr,
        sibling_law=laws, out_node=node.ptr, out_token=token.ptr))
    return out


verify_tree.__doc__ = """Verifies a batch of B draft trees on the GPU: the accepted node of each
    request's tree and the token after its path, distributed exactly as the target model alone
    samples (asps.reference.tree_law gives the law).

    Arrays: ``target_logits`` ``[B, N, V]`` (node u's row: the target's logits after u's path),
    ``parents`` and ``tokens`` ``[B, N]`` int32, contiguous (node i >= 1 has parent
    ``parents[b, i] < i`` and token ``tokens[b, i]``; entry 0, the root's, is not read; a
    node's children, in increasing index, are in the order they were drawn), ``draft_logits``
    ``[B, N - 1, V]`` (node u's row, its children were drawn from) or None where every request's
    children are deterministic. ``num_nodes`` (one number or an int32 array of B, 1..N; None:
    N) makes a batch ragged. ``rule`` is ``"tv"`` (Traversal Verification) or ``"rrs"``
    (recursive rejection sampling); ``sibling_law`` is ``"without_replacement"``,
    ``"with_replacement"`` or ``"deterministic"`` (the draft's most probable tokens), or an
    int32 array of B of their codes 0, 1, 2.
""" + _SAMPLING + _CONTRACT + """
    Returns :class:`VerifiedTree`.
"""
