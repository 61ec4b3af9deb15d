"""The exact f64 reference of asps on NumPy arrays.

Logits are float32, float16 or bfloat16 arrays (the dtypes the kernels take; other dtypes
raise ``TypeError`` rather than being cast). A request's target logits are ``[n + 1, V]`` (the
target's rows after each draft prefix), its draft logits ``[n, V]`` and its draft tokens
``[n]``; a batch adds a leading ``B`` to all three. Sampling keywords are those of the kernels:
``temperature`` (0: greedy), ``draft_temperature`` (``None``: the target's; 0: a greedy
drafter), and each model's ``top_k``, ``top_p``, ``min_p`` (``None``: off). Errors in the
inputs (NaN logits, tokens out of range, impossible draft tokens, parameters out of their
domain) raise ``ValueError`` with the crate's message.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Sequence, Union

import numpy as np

from . import _asps

__all__ = ["StepLaw", "step_law", "step_law_from_probs", "verify", "tree_law", "tree_verify"]

_METHODS = ("asps", "sps", "greedy")


@dataclass(frozen=True)
class StepLaw:
    """The exact law of one verification step.

    ``reject[k, v]`` is P(keep the first k draft tokens, then emit v) for k < n;
    ``accept_all`` is P(keep all n); ``bonus[v]`` is the law of the token after a full accept.
    """

    reject: np.ndarray
    accept_all: float
    bonus: np.ndarray

    @property
    def draft_len(self) -> int:
        return self.reject.shape[0]

    def accepted_law(self) -> np.ndarray:
        """P(exactly k draft tokens are kept), k = 0..n."""
        return np.append(self.reject.sum(axis=1), self.accept_all)

    def expected_tokens(self) -> float:
        """The expected number of tokens the step emits (kept tokens plus one)."""
        return float(np.dot(np.arange(1, self.draft_len + 2), self.accepted_law()))

    def prob(self, accepted: int, token: int) -> float:
        """P(keep ``accepted`` draft tokens, then emit ``token``): after a full accept, the
        bonus token's probability times ``accept_all``."""
        if not 0 <= accepted <= self.draft_len or not 0 <= token < self.bonus.shape[0]:
            raise ValueError(
                f"outcome ({accepted}, {token}): keeps 0..={self.draft_len} tokens, then one of "
                f"0..{self.bonus.shape[0]}")
        if accepted < self.draft_len:
            return float(self.reject[accepted, token])
        return float(self.accept_all * self.bonus[token])

    def total(self) -> float:
        return float(self.reject.sum() + self.accept_all)


def _logits(x, name: str) -> np.ndarray:
    a = np.asarray(x)
    if a.dtype.name not in ("float32", "float16", "bfloat16"):
        raise TypeError(
            f"{name}: logits of dtype {a.dtype.name}; the kernels take float32, float16 or "
            "bfloat16 (cast explicitly)"
        )
    return np.ascontiguousarray(a)


def _tokens(x, name: str) -> np.ndarray:
    a = np.asarray(x)
    if a.dtype.kind not in "iu":
        raise TypeError(f"{name}: token ids of dtype {a.dtype.name}; integers expected")
    return a.astype(np.int64)


def _method(method: str) -> str:
    if method not in _METHODS:
        raise ValueError(f"method {method!r}: one of {', '.join(map(repr, _METHODS))}")
    return method


def _sampling(temperature, draft_temperature, top_k, top_p, min_p, draft_top_k, draft_top_p,
              draft_min_p):
    return (
        float(temperature),
        None if draft_temperature is None else float(draft_temperature),
        None if top_k is None else int(top_k),
        None if top_p is None else float(top_p),
        None if min_p is None else float(min_p),
        None if draft_top_k is None else int(draft_top_k),
        None if draft_top_p is None else float(draft_top_p),
        None if draft_min_p is None else float(draft_min_p),
    )


def _requests(target_logits, draft_logits, draft_tokens):
    """The requests of a call: a list of (target [n+1, V], draft [n, V], tokens [n]) and
    whether the call was batched."""
    t = _logits(target_logits, "target_logits")
    d = _logits(draft_logits, "draft_logits")
    x = _tokens(draft_tokens, "draft_tokens")
    if t.dtype != d.dtype:
        raise TypeError(f"target_logits are {t.dtype.name} but draft_logits {d.dtype.name}")
    batched = t.ndim == 3
    if not batched:
        t, d, x = t[None], d[None], x[None]
    if t.ndim != 3 or d.ndim != 3 or x.ndim != 2:
        raise ValueError(
            "target_logits [n + 1, V], draft_logits [n, V] and draft_tokens [n] (or each with "
            f"a leading batch): got {t.shape}, {d.shape} and {x.shape}"
        )
    b, n1, v = t.shape
    if d.shape != (b, n1 - 1, v) or x.shape != (b, n1 - 1) or n1 < 2 or v < 1:
        raise ValueError(
            f"target_logits {t.shape}, draft_logits {d.shape}, draft_tokens {x.shape}: want "
            "[B, n + 1, V], [B, n, V] and [B, n] with n >= 1, V >= 1"
        )
    return [(t[i], d[i], x[i]) for i in range(b)], batched


def step_law(target_logits, draft_logits, draft_tokens, *, method: str = "asps",
             temperature: float = 1.0, draft_temperature: Optional[float] = None,
             top_k: Optional[int] = None, top_p: Optional[float] = None,
             min_p: Optional[float] = None, draft_top_k: Optional[int] = None,
             draft_top_p: Optional[float] = None,
             draft_min_p: Optional[float] = None) -> Union[StepLaw, list[StepLaw]]:
    """The exact law of a verification step under ``method`` from logits, each model sampled
    as the keywords say: a :class:`StepLaw`, or a list of them for a batch."""
    sampling = _sampling(temperature, draft_temperature, top_k, top_p, min_p, draft_top_k,
                         draft_top_p, draft_min_p)
    requests, batched = _requests(target_logits, draft_logits, draft_tokens)
    laws = []
    for t, d, x in requests:
        reject, accept_all, bonus = _asps.step_law_from_logits_rows(
            _method(method), t.dtype.name, t.tobytes(), d.tobytes(), x.tolist(), t.shape[1],
            sampling)
        laws.append(StepLaw(np.asarray(reject, dtype=np.float64).reshape(len(x), t.shape[1]),
                            accept_all, np.asarray(bonus, dtype=np.float64)))
    return laws if batched else laws[0]


def step_law_from_probs(target_probs, draft_probs, draft_tokens, *,
                        method: str = "asps") -> StepLaw:
    """The exact law of one request's step from probability rows (float64): target
    ``[n + 1, V]``, draft ``[n, V]``, each row summing to 1."""
    t = np.asarray(target_probs, dtype=np.float64)
    d = np.asarray(draft_probs, dtype=np.float64)
    x = _tokens(draft_tokens, "draft_tokens")
    if t.ndim != 2 or d.ndim != 2 or x.ndim != 1 or d.shape != (t.shape[0] - 1, t.shape[1]) \
            or x.shape[0] != d.shape[0]:
        raise ValueError(
            f"target_probs {t.shape}, draft_probs {d.shape}, draft_tokens {x.shape}: want "
            "[n + 1, V], [n, V] and [n]")
    reject, accept_all, bonus = _asps.step_law_from_prob_rows(
        _method(method), t.tolist(), d.tolist(), x.tolist())
    return StepLaw(np.asarray(reject, dtype=np.float64).reshape(len(x), t.shape[1]),
                   accept_all, np.asarray(bonus, dtype=np.float64))


def verify(target_logits, draft_logits, draft_tokens, *, method: str = "asps",
           temperature: float = 1.0, draft_temperature: Optional[float] = None,
           top_k: Optional[int] = None, top_p: Optional[float] = None,
           min_p: Optional[float] = None, draft_top_k: Optional[int] = None,
           draft_top_p: Optional[float] = None, draft_min_p: Optional[float] = None,
           seed: Union[int, Sequence[int]] = 0,
           offset: Union[int, Sequence[int]] = 0):
    """One verification step drawn with the kernels' noise for each request's ``seed`` and
    ``offset`` (the GPU draws the same, up to float near-ties). Returns ``(accepted, token)``:
    the number of draft tokens kept and the token emitted after them; for a batch, two int64
    arrays of B (``seed`` and ``offset`` then one per request, or one for all)."""
    sampling = _sampling(temperature, draft_temperature, top_k, top_p, min_p, draft_top_k,
                         draft_top_p, draft_min_p)
    requests, batched = _requests(target_logits, draft_logits, draft_tokens)
    seeds = np.broadcast_to(np.asarray(seed, dtype=np.uint64), (len(requests),))
    offsets = np.broadcast_to(np.asarray(offset, dtype=np.uint64), (len(requests),))
    out = [
        _asps.verify_rows(_method(method), t.dtype.name, t.tobytes(), d.tobytes(), x.tolist(),
                          t.shape[1], sampling, int(s), int(o))
        for (t, d, x), s, o in zip(requests, seeds, offsets)
    ]
    if not batched:
        return out[0]
    return (np.array([a for a, _ in out], dtype=np.int64),
            np.array([t for _, t in out], dtype=np.int64))


def _tree(target_logits, parents, tokens, draft_logits):
    t = _logits(target_logits, "target_logits")
    p = _tokens(parents, "parents")
    x = _tokens(tokens, "tokens")
    if t.ndim != 2 or p.shape != (t.shape[0],) or x.shape != (t.shape[0],):
        raise ValueError(
            f"target_logits {t.shape}, parents {p.shape}, tokens {x.shape}: want [N, V], [N] "
            "and [N]")
    d = None
    if draft_logits is not None:
        d = _logits(draft_logits, "draft_logits")
        if d.dtype != t.dtype:
            raise TypeError(f"target_logits are {t.dtype.name} but draft_logits {d.dtype.name}")
        if d.shape != (t.shape[0] - 1, t.shape[1]):
            raise ValueError(f"draft_logits {d.shape}: want [N - 1, V] = "
                             f"{(t.shape[0] - 1, t.shape[1])}")
    return (t.dtype.name, p.tolist(), x.tolist(), t.tobytes(),
            None if d is None else d.tobytes(), t.shape[1]), t.shape


def tree_law(target_logits, parents, tokens, *, draft_logits=None, rule: str = "tv",
             sibling_law: str = "without_replacement", temperature: float = 1.0,
             draft_temperature: Optional[float] = None, top_k: Optional[int] = None,
             top_p: Optional[float] = None, min_p: Optional[float] = None,
             draft_top_k: Optional[int] = None, draft_top_p: Optional[float] = None,
             draft_min_p: Optional[float] = None) -> np.ndarray:
    """The exact law of one step over a draft tree of N nodes: ``law[u, v]`` = P(the accepted
    node is u and the next token is v), ``[N, V]``.

    Node 0 is the root; ``parents[i] < i`` and ``tokens[i]`` give node i >= 1 (entry 0 of each
    is not read); a node's children, in increasing index, are in draw order. ``target_logits``
    is ``[N, V]`` (the target's row after each node's path); ``draft_logits`` ``[N - 1, V]``
    (node u's row, its children were drawn from), ``None`` for ``sibling_law="deterministic"``.
    ``rule`` is ``"tv"`` (Traversal Verification) or ``"rrs"`` (recursive rejection
    sampling). The expected tokens are ``(law.sum(axis=1) * (depth + 1)).sum()``."""
    tree, shape = _tree(target_logits, parents, tokens, draft_logits)
    sampling = _sampling(temperature, draft_temperature, top_k, top_p, min_p, draft_top_k,
                         draft_top_p, draft_min_p)
    emit = _asps.tree_law_rows(rule, sibling_law, *tree, sampling)
    return np.asarray(emit, dtype=np.float64).reshape(shape)


def tree_verify(target_logits, parents, tokens, *, draft_logits=None, rule: str = "tv",
                sibling_law: str = "without_replacement", temperature: float = 1.0,
                draft_temperature: Optional[float] = None, top_k: Optional[int] = None,
                top_p: Optional[float] = None, min_p: Optional[float] = None,
                draft_top_k: Optional[int] = None, draft_top_p: Optional[float] = None,
                draft_min_p: Optional[float] = None, seed: int = 0, offset: int = 0):
    """One step over a draft tree (arguments as :func:`tree_law`) drawn with the tree kernels'
    noise for ``seed`` and ``offset`` (the GPU draws the same, up to float near-ties). Returns
    ``(node, token)``: the accepted node (0: the root, no draft token kept) and the token
    emitted after its path."""
    tree, _ = _tree(target_logits, parents, tokens, draft_logits)
    sampling = _sampling(temperature, draft_temperature, top_k, top_p, min_p, draft_top_k,
                         draft_top_p, draft_min_p)
    return _asps.tree_verify_rows(rule, sibling_law, *tree, sampling, int(seed), int(offset))
