"""asps.verify end to end: device arrays in (asps.DeviceArray and a bare
__cuda_array_interface__ object over them, so neither torch nor a GPU is needed: CI runs this on
the emulated device of tests/emu), tokens out, equal to asps.reference.verify's for the same
seed and offset. Exact comparisons on fixed seeds; the logits are random, far from the float
near-ties at which the kernels and the reference may differ. Skipped where asps.verify cannot
run (no driver, no device, a build without kernels) unless ASPS_REQUIRE_GPU=1, which makes that
a failure."""

import contextlib
import os
import sys

import numpy as np
import pytest

import asps
from asps import DeviceArray, RequestStatus, reference


@pytest.fixture(autouse=True, scope="module")
def gpu():
    why = asps.gpu_error()
    if why is not None:
        if os.environ.get("ASPS_REQUIRE_GPU") == "1":
            pytest.fail(f"ASPS_REQUIRE_GPU=1, but asps.verify cannot run: {why}")
        pytest.skip(f"asps.verify cannot run here: {why}")


class Cai:
    """A bare __cuda_array_interface__ over part of a DeviceArray (byte strides)."""

    def __init__(self, base, shape, typestr, strides, offset=0, stream=None, readonly=False):
        self.base = base  # keeps the memory alive
        self.__cuda_array_interface__ = {
            "shape": shape, "typestr": typestr, "data": (base.ptr + offset, readonly),
            "strides": strides, "version": 3, "stream": stream}


class HostCai:
    """A __cuda_array_interface__ that lies: its address is host memory."""

    def __init__(self, host):
        self.host = host
        self.__cuda_array_interface__ = {
            "shape": host.shape, "typestr": host.dtype.str, "data": (host.ctypes.data, False),
            "strides": None, "version": 3}


def logits(rng, *shape):
    return (rng.standard_normal(shape) * 2).astype(np.float32)


def to_bf16(x):
    """float32 values rounded to bfloat16 (ties to even): the bit patterns, and the same
    values as float32, which the reference takes (it reads every dtype as its exact value)."""
    bits = x.view(np.uint32).astype(np.uint64)
    bits = ((bits + 0x7FFF + ((bits >> 16) & 1)) >> 16).astype(np.uint16)
    return bits, (bits.astype(np.uint32) << 16).view(np.float32)


def draft_tokens_of(draft, rng):
    """Each draft row's token drawn from its softmax (T = 1, untruncated)."""
    p = np.exp(draft - draft.max(axis=-1, keepdims=True))
    p /= p.sum(axis=-1, keepdims=True)
    flat = p.reshape(-1, p.shape[-1])
    return np.array([rng.choice(len(r), p=r / r.sum()) for r in flat],
                    dtype=np.int32).reshape(p.shape[:-1])


def check_against_reference(out, target, draft, tokens, lens, per_request):
    """out (a Verified of DeviceArrays) against reference.verify, request by request;
    per_request(b) gives request b's keywords."""
    got_tokens, emitted, accepted, status = (a.numpy() for a in out)
    n = tokens.shape[1]
    for b in range(target.shape[0]):
        nb = lens[b]
        kept, token = reference.verify(target[b, :nb + 1], draft[b, :nb], tokens[b, :nb],
                                       **per_request(b))
        assert status[b] == RequestStatus.OK, (b, status[b])
        assert accepted[b] == kept and emitted[b] == kept + 1, (b, accepted[b], kept)
        assert list(got_tokens[b, :kept]) == list(tokens[b, :kept])
        assert got_tokens[b, kept] == token, (b, got_tokens[b, kept], token)
        assert all(got_tokens[b, kept + 1:n + 1] == -1)


@pytest.mark.parametrize("dtype", ["float32", "float16", "bfloat16"])
def test_a_ragged_batch_with_per_request_arrays_equals_the_reference(dtype):
    rng = np.random.default_rng(11)
    batch, n, vocab = 6, 4, 50
    target, draft = logits(rng, batch, n + 1, vocab), logits(rng, batch, n, vocab)
    if dtype == "float16":
        target, draft = target.astype(np.float16), draft.astype(np.float16)
        t_dev, d_dev = DeviceArray.from_numpy(target), DeviceArray.from_numpy(draft)
    elif dtype == "bfloat16":
        (tb, target), (db, draft) = to_bf16(target), to_bf16(draft)
        t_dev = DeviceArray.from_numpy(tb, dtype="bfloat16")
        d_dev = DeviceArray.from_numpy(db, dtype="bfloat16")
    else:
        t_dev, d_dev = DeviceArray.from_numpy(target), DeviceArray.from_numpy(draft)
    tokens = draft_tokens_of(draft.astype(np.float32), rng)
    lens = np.array([4, 1, 3, 4, 2, 4], dtype=np.int32)
    temps = np.array([1.0, 0.7, 0.0, 1.3, 1.0, 0.5], dtype=np.float32)
    draft_temps = np.array([1.0, 0.9, 1.0, 1.2, 0.8, 0.6], dtype=np.float32)
    # The target's truncation per request (0 / 1 / 0: off).
    top_k = np.array([0, 20, 0, 45, 0, 10], dtype=np.int32)
    top_p = np.array([1.0, 0.95, 1.0, 1.0, 0.9, 1.0], dtype=np.float32)
    min_p = np.array([0.0, 0.0, 0.0, 0.01, 0.0, 0.02], dtype=np.float32)
    seeds = np.array([1, 2, 3, 2**63 + 5, 7, 9], dtype=np.uint64)
    offsets = np.array([0, 10, 20, 30, 2**40, 50], dtype=np.uint64)
    offsets_dev = DeviceArray.from_numpy(offsets)
    out = asps.verify(t_dev, d_dev, DeviceArray.from_numpy(tokens),
                      temperature=DeviceArray.from_numpy(temps),
                      draft_temperature=DeviceArray.from_numpy(draft_temps),
                      top_k=DeviceArray.from_numpy(top_k), top_p=DeviceArray.from_numpy(top_p),
                      min_p=DeviceArray.from_numpy(min_p),
                      draft_lens=DeviceArray.from_numpy(lens),
                      seed=DeviceArray.from_numpy(seeds), offset=offsets_dev)
    check_against_reference(out, target, draft, tokens, lens, lambda b: dict(
        temperature=float(temps[b]), draft_temperature=float(draft_temps[b]),
        top_k=int(top_k[b]) or None, top_p=float(top_p[b]), min_p=float(min_p[b]),
        seed=int(seeds[b]), offset=int(offsets[b])))
    assert list(offsets_dev.numpy()) == list(offsets + 1)


@pytest.mark.parametrize("method", ["asps", "sps", "greedy"])
def test_scalar_parameters_and_truncation_equal_the_reference(method):
    rng = np.random.default_rng(12)
    batch, n, vocab = 5, 3, 40
    target, draft = logits(rng, batch, n + 1, vocab), logits(rng, batch, n, vocab)
    # The draft's most probable tokens: kept by any truncation of the draft's rows.
    tokens = draft.argmax(axis=-1).astype(np.int32)
    keywords = dict(method=method, temperature=0.8, draft_temperature=0.9, top_k=10,
                    top_p=0.9, min_p=0.02, draft_top_k=20, draft_top_p=0.95, draft_min_p=0.01)
    # Both halves of the 64-bit seed and offset nonzero (NumPy numbers are numbers too).
    seed, offset = 77 + 2**40, np.uint64(5 + 2**33)
    out = asps.verify(DeviceArray.from_numpy(target), DeviceArray.from_numpy(draft),
                      DeviceArray.from_numpy(tokens), seed=seed, offset=offset, **keywords)
    check_against_reference(out, target, draft, tokens, [n] * batch,
                            lambda b: dict(keywords, seed=seed, offset=int(offset)))


def test_strided_rows_through_the_cuda_array_interface():
    rng = np.random.default_rng(13)
    batch, n, vocab, pad = 3, 2, 30, 5
    target, draft = logits(rng, batch, n + 1, vocab), logits(rng, batch, n, vocab)
    padded = np.full((batch, n + 1, vocab + pad), np.nan, dtype=np.float32)
    padded[:, :, pad:] = target  # rows start `pad` elements into each padded row
    base = DeviceArray.from_numpy(padded)
    rows = Cai(base, (batch, n + 1, vocab), "<f4",
               ((n + 1) * (vocab + pad) * 4, (vocab + pad) * 4, 4), offset=pad * 4, stream=1)
    d = DeviceArray.from_numpy(draft)
    tokens = draft_tokens_of(draft, rng)
    x = Cai(DeviceArray.from_numpy(tokens), (batch, n), "<i4", None)
    out = asps.verify(rows, Cai(d, (batch, n, vocab), "<f4", None), x, seed=3, offset=4)
    check_against_reference(out, target, draft, tokens, [n] * batch,
                            lambda b: dict(seed=3, offset=4))


def test_the_workspace_grows_with_the_calls():
    rng = np.random.default_rng(14)
    for batch, n in [(2, 2), (9, 5), (3, 1), (9, 7)]:
        vocab = 20
        target, draft = logits(rng, batch, n + 1, vocab), logits(rng, batch, n, vocab)
        tokens = draft_tokens_of(draft, rng)
        out = asps.verify(DeviceArray.from_numpy(target), DeviceArray.from_numpy(draft),
                          DeviceArray.from_numpy(tokens), method="sps", seed=batch, offset=n)
        check_against_reference(out, target, draft, tokens, [n] * batch,
                                lambda b: dict(method="sps", seed=batch, offset=n))


def test_outputs_given_are_written_in_place():
    rng = np.random.default_rng(20)
    batch, n, vocab = 3, 2, 20
    target, draft = logits(rng, batch, n + 1, vocab), logits(rng, batch, n, vocab)
    tokens = draft_tokens_of(draft, rng)
    out = asps.Verified(DeviceArray((batch, n + 1), "int32"), DeviceArray((batch,), "int32"),
                        DeviceArray((batch,), "int32"), DeviceArray((batch,), "int32"))
    got = asps.verify(DeviceArray.from_numpy(target), DeviceArray.from_numpy(draft),
                      DeviceArray.from_numpy(tokens), seed=4, out=out)
    assert all(g is o for g, o in zip(got, out))
    check_against_reference(out, target, draft, tokens, [n] * batch,
                            lambda b: dict(seed=4))
    t, d, x = (DeviceArray.from_numpy(a) for a in (target, draft, tokens))
    with pytest.raises(ValueError, match=r"out.tokens: int32 \(3, 2\); int32 \(3, 3\)"):
        asps.verify(t, d, x, out=(DeviceArray((batch, n), "int32"),) + tuple(out[1:]))
    with pytest.raises(TypeError, match="out: a DeviceArray"):
        asps.verify(t, d, x, out=out.tokens)


def test_the_callers_current_context_is_left_as_it_was():
    # The thread's current CUDA context (torch's current device) is the caller's: a call binds
    # its device's context and must give the caller's back, none included.
    import ctypes
    cuda = ctypes.CDLL("libcuda.so.1")
    current = ctypes.c_void_p()
    rng = np.random.default_rng(21)
    t, d = (DeviceArray.from_numpy(logits(rng, 2, k, 8)) for k in (3, 2))
    x = DeviceArray.from_numpy(np.zeros((2, 2), dtype=np.int32))
    assert cuda.cuCtxSetCurrent(None) == 0
    out = asps.verify(t, d, x, seed=1)
    assert cuda.cuCtxGetCurrent(ctypes.byref(current)) == 0 and current.value is None
    out.tokens.numpy()
    del out
    assert cuda.cuCtxGetCurrent(ctypes.byref(current)) == 0 and current.value is None


def test_bad_requests_get_their_own_status():
    rng = np.random.default_rng(15)
    batch, n, vocab = 3, 2, 16
    target, draft = logits(rng, batch, n + 1, vocab), logits(rng, batch, n, vocab)
    target[1, 0, 3] = np.nan
    tokens = draft_tokens_of(draft, rng)
    tokens[2, 1] = vocab  # out of range
    out = asps.verify(DeviceArray.from_numpy(target), DeviceArray.from_numpy(draft),
                      DeviceArray.from_numpy(tokens), seed=1)
    status = out.status.numpy()
    assert list(status) == [RequestStatus.OK, RequestStatus.NAN,
                            RequestStatus.TOKEN_OUT_OF_RANGE]
    assert list(out.num_emitted.numpy()[1:]) == [0, 0]
    assert (out.tokens.numpy()[1:] == -1).all()


# A tree of 6 nodes: 1 and 2 children of the root, 3 and 4 of node 1, 5 of node 2; any prefix
# of its nodes is a tree too.
PARENTS = [0, 0, 0, 1, 1, 2]


def tree_tokens(rng, batch, vocab):
    """Each node's token, distinct among siblings (drawn without replacement)."""
    tokens = np.zeros((batch, len(PARENTS)), dtype=np.int32)
    for b in range(batch):
        for u in range(len(PARENTS)):
            children = [i for i in range(1, len(PARENTS)) if PARENTS[i] == u]
            tokens[b, children] = rng.choice(vocab, size=len(children), replace=False)
    return tokens


@pytest.mark.parametrize("rule", ["tv", "rrs"])
@pytest.mark.parametrize("sibling_law", ["without_replacement", "deterministic", "mixed"])
def test_a_ragged_batch_of_trees_equals_the_reference(rule, sibling_law):
    rng = np.random.default_rng(18)
    batch, nodes, vocab = 4, len(PARENTS), 30
    target = logits(rng, batch, nodes, vocab)
    draft = logits(rng, batch, nodes - 1, vocab)
    tokens = tree_tokens(rng, batch, vocab)
    parents = np.tile(np.array(PARENTS, dtype=np.int32), (batch, 1))
    # Ragged through an array, or every tree whole (the number of nodes then one number, as the
    # sibling law is: two parameters broadcast by the same call).
    ragged = sibling_law != "without_replacement"
    num_nodes = np.array([6, 4, 1, 6] if ragged else [6] * batch, dtype=np.int32)
    temps = np.array([1.0, 0.8, 1.0, 0.0], dtype=np.float32)
    if sibling_law == "mixed":
        laws = np.array([0, 2, 1, 2], dtype=np.int32)
        sibling_arg = DeviceArray.from_numpy(laws)
    else:
        laws = np.full(batch, {"without_replacement": 0, "deterministic": 2}[sibling_law])
        sibling_arg = sibling_law
    names = ["without_replacement", "with_replacement", "deterministic"]
    # Deterministic children read no draft row: such a call may have none.
    with_draft = sibling_law != "deterministic"
    offsets = DeviceArray.from_numpy(np.array([3, 2**35, 0, 9], dtype=np.uint64))
    out = asps.verify_tree(
        DeviceArray.from_numpy(target), DeviceArray.from_numpy(parents),
        DeviceArray.from_numpy(tokens),
        draft_logits=DeviceArray.from_numpy(draft) if with_draft else None,
        num_nodes=DeviceArray.from_numpy(num_nodes) if ragged else None, rule=rule,
        sibling_law=sibling_arg,
        temperature=DeviceArray.from_numpy(temps), seed=2**40 + 17, offset=offsets)
    node, token, emitted, status = (a.numpy() for a in out)
    depth = [0, 1, 1, 2, 2, 2]
    for b in range(batch):
        nb = num_nodes[b]
        want = reference.tree_verify(
            target[b, :nb], PARENTS[:nb], tokens[b, :nb],
            draft_logits=draft[b, :nb - 1] if with_draft else None, rule=rule,
            sibling_law=names[laws[b]], temperature=float(temps[b]), seed=2**40 + 17,
            offset=int([3, 2**35, 0, 9][b]))
        assert status[b] == RequestStatus.OK, (b, status[b])
        assert (node[b], token[b]) == want, (b, node[b], token[b], want)
        assert emitted[b] == depth[node[b]] + 1
    assert list(offsets.numpy()) == [4, 2**35 + 1, 1, 10]


def test_tree_argument_errors_raise_and_name_the_argument():
    rng = np.random.default_rng(19)
    t = DeviceArray.from_numpy(logits(rng, 2, 6, 8))
    parents = DeviceArray.from_numpy(np.tile(np.array(PARENTS, dtype=np.int32), (2, 1)))
    tokens = DeviceArray.from_numpy(tree_tokens(rng, 2, 8))
    cases = [
        (ValueError, "rule 'eagle'", lambda: asps.verify_tree(t, parents, tokens, rule="eagle")),
        (ValueError, "sibling_law 'top'", lambda: asps.verify_tree(
            t, parents, tokens, sibling_law="top")),
        (ValueError, "parents: shape", lambda: asps.verify_tree(
            t, DeviceArray.from_numpy(np.zeros((2, 5), np.int32)), tokens)),
        (ValueError, "draft_logits", lambda: asps.verify_tree(
            t, parents, tokens, draft_logits=DeviceArray.from_numpy(logits(rng, 2, 6, 8)))),
        # The crate's own check: more nodes than the kernels take.
        (ValueError, "64", lambda: asps.verify_tree(
            DeviceArray.from_numpy(logits(rng, 1, 65, 2)),
            DeviceArray.from_numpy(np.zeros((1, 65), np.int32)),
            DeviceArray.from_numpy(np.zeros((1, 65), np.int32)), sibling_law="deterministic")),
    ]
    for error, words, call in cases:
        with pytest.raises(error, match=words):
            call()
    # Children drawn from draft rows, but no draft rows; an unknown sibling law: the requests'
    # statuses say so.
    out = asps.verify_tree(t, parents, tokens, seed=1)
    assert list(out.status.numpy()) == [RequestStatus.BAD_TREE] * 2
    laws = DeviceArray.from_numpy(np.array([2, 3], dtype=np.int32))
    node = DeviceArray((2,), "int32")
    out = asps.verify_tree(t, parents, tokens, sibling_law=laws, seed=1,
                           out=(node,) + tuple(DeviceArray((2,), "int32") for _ in range(3)))
    assert out.node is node
    assert list(out.status.numpy()) == [RequestStatus.OK, RequestStatus.BAD_TREE]


def arrays(batch=2, n=2, vocab=8, dtype=np.float32):
    rng = np.random.default_rng(16)
    return (DeviceArray.from_numpy(logits(rng, batch, n + 1, vocab).astype(dtype)),
            DeviceArray.from_numpy(logits(rng, batch, n, vocab).astype(dtype)),
            DeviceArray.from_numpy(np.zeros((batch, n), dtype=np.int32)))


def test_argument_errors_raise_and_name_the_argument():
    t, d, x = arrays()
    host = np.zeros((2, 3, 8), dtype=np.float32)
    cases = [
        (TypeError, "target_logits: a list", lambda: asps.verify(host.tolist(), d, x)),
        # NumPy arrays speak DLPack, from the host.
        (ValueError, "target_logits: a DLPack array on device type 1", lambda: asps.verify(
            host, d, x)),
        (ValueError, "draft_lens: a DLPack array on device type 1", lambda: asps.verify(
            t, d, x, draft_lens=np.ones(2, "i4"))),
        (TypeError, "one dtype", lambda: asps.verify(t, arrays(dtype=np.float16)[1], x)),
        (TypeError, "int32", lambda: asps.verify(
            t, d, DeviceArray.from_numpy(np.zeros((2, 2), dtype=np.int64)))),
        (ValueError, "expected", lambda: asps.verify(t, arrays(n=3)[1], x)),
        (ValueError, "temperature", lambda: asps.verify(
            t, d, x, temperature=DeviceArray.from_numpy(np.ones(3, dtype=np.float32)))),
        (TypeError, "top_k", lambda: asps.verify(t, d, x, top_k=2.5)),
        (ValueError, "seed", lambda: asps.verify(t, d, x, seed=-1)),
        (ValueError, "method", lambda: asps.verify(t, d, x, method="typical")),
        (ValueError, "contiguous", lambda: asps.verify(
            Cai(t, (2, 3, 4), "<f4", (96, 32, 8)), Cai(d, (2, 2, 4), "<f4", None), x)),
        (ValueError, "draft_logits: address 0x[0-9a-f]+ is not CUDA device memory",
         lambda: asps.verify(t, HostCai(np.zeros((2, 2, 8), dtype=np.float32)), x)),
        (TypeError, "'<f8'", lambda: asps.verify(Cai(t, (2, 3, 4), "<f8", None), d, x)),
        # The crate's own checks, with its messages: a misaligned pointer, too long a draft.
        (ValueError, "align", lambda: asps.verify(
            Cai(t, (2, 3, 7), "<f4", (96, 32, 4), offset=2), Cai(d, (2, 2, 7), "<f4", None),
            x)),
        (ValueError, "64", lambda: asps.verify(*arrays(batch=1, n=65, vocab=4))),
        (ValueError, "offset: a read-only array", lambda: asps.verify(
            t, d, x, offset=Cai(DeviceArray.from_numpy(np.zeros(2, np.uint64)), (2,), "<u8", None,
                                readonly=True))),
        (ValueError, "temperature is required", lambda: asps.verify(t, d, x, temperature=None)),
    ]
    for error, words, call in cases:
        with pytest.raises(error, match=words):
            call()


def test_device_arrays_round_trip_and_describe_themselves():
    a = np.arange(12, dtype=np.int32).reshape(3, 4)
    dev = DeviceArray.from_numpy(a)
    assert (dev.numpy() == a).all()
    cai = dev.__cuda_array_interface__
    assert cai["shape"] == (3, 4) and cai["typestr"] == "<i4" and cai["data"][0] == dev.ptr
    bits = np.array([0x3F80, 0xC000], dtype=np.uint16)  # 1.0, -2.0
    assert (DeviceArray.from_numpy(bits, dtype="bfloat16").numpy() == bits).all()
    with pytest.raises(TypeError):
        DeviceArray.from_numpy(np.zeros(2, dtype=np.float64))


class FakeTorch:
    """The part of torch's API that asps reads from a CUDA tensor (data_ptr, shape, stride,
    dtype, device, is_cuda) and uses to make its outputs (torch.empty) and find the stream
    (torch.cuda.current_stream(device).cuda_stream), over DeviceArrays: the torch path without
    a torch CUDA build."""

    class Dtype:
        def __init__(self, name):
            self.name = name

        def __str__(self):
            return f"torch.{self.name}"

    class Device:
        def __init__(self, kind, index):
            self.type, self.index = kind, index

        def __str__(self):
            return f"{self.type}:{self.index}"

    class Tensor:
        def __init__(self, array, cuda=True):
            self.array = array
            self.shape = array.shape
            self.dtype = FakeTorch.Dtype(array.dtype)
            self.is_cuda = cuda
            self.device = FakeTorch.Device("cuda" if cuda else "cpu", array.device)

        def data_ptr(self):
            return self.array.ptr

        def stride(self):
            return self.array.strides

    class Stream:
        def __init__(self, handle):
            self.cuda_stream = handle

    def __init__(self, stream):
        self.int32 = FakeTorch.Dtype("int32")
        self.streams_asked = []
        # The current stream's handle when each output was made.
        self.made_on = []
        self.current = stream
        torch = self

        class Cuda:
            @staticmethod
            def current_stream(device):
                torch.streams_asked.append(device.index)
                return FakeTorch.Stream(torch.current)

            class ExternalStream(FakeTorch.Stream):
                def __init__(self, handle, device=None):
                    super().__init__(handle)

            @staticmethod
            @contextlib.contextmanager
            def stream(s):
                before, torch.current = torch.current, s.cuda_stream
                try:
                    yield
                finally:
                    torch.current = before

        self.cuda = Cuda

    def empty(self, shape, dtype, device):
        self.made_on.append(self.current)
        return FakeTorch.Tensor(DeviceArray(shape, dtype.name, device.index))


def test_torch_tensors_in_torch_tensors_out_on_torchs_current_stream(monkeypatch):
    rng = np.random.default_rng(17)
    batch, n, vocab = 4, 3, 24
    target, draft = logits(rng, batch, n + 1, vocab), logits(rng, batch, n, vocab)
    tokens = draft_tokens_of(draft, rng)
    # 2: the per-thread default stream (torch's handle for it), which the emulated device runs.
    torch = FakeTorch(stream=2)
    monkeypatch.setitem(sys.modules, "torch", torch)
    t, d, x = (FakeTorch.Tensor(DeviceArray.from_numpy(a)) for a in (target, draft, tokens))
    temps = FakeTorch.Tensor(DeviceArray.from_numpy(np.full(batch, 0.9, dtype=np.float32)))
    out = asps.verify(t, d, x, temperature=temps, seed=21, offset=8)
    assert torch.streams_asked == [0]
    assert torch.made_on == [2] * 4
    assert all(isinstance(a, FakeTorch.Tensor) for a in out)
    host = asps.Verified(*(a.array for a in out))
    check_against_reference(host, target, draft, tokens, [n] * batch,
                            lambda b: dict(temperature=0.9, seed=21, offset=8))
    # A stream given: the outputs are made with it current, so that torch's caching allocator
    # hands out blocks safe on it (the legacy stream, 1, here; torch's current one stays 2).
    out = asps.verify(t, d, x, temperature=temps, seed=21, offset=8, stream=1)
    assert torch.made_on[4:] == [1] * 4 and torch.current == 2
    check_against_reference(asps.Verified(*(a.array for a in out)), target, draft, tokens,
                            [n] * batch, lambda b: dict(temperature=0.9, seed=21, offset=8))
    cpu = FakeTorch.Tensor(DeviceArray.from_numpy(target), cuda=False)
    with pytest.raises(ValueError, match="target_logits: a torch tensor on cpu:0"):
        asps.verify(cpu, d, x)
