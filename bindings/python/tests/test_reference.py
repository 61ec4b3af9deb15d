"""asps.reference against laws computed here in NumPy, the Rust tests' own vectors, and the
argument checks. Exact comparisons at 1e-12 (both sides f64); the one sampled check draws
from fixed seeds."""

import numpy as np
import pytest

import asps
from asps import reference


def softmax(logits, temperature=1.0):
    z = np.asarray(logits, dtype=np.float64) / temperature
    e = np.exp(z - z.max())
    return e / e.sum()


def test_the_binary_vectors_of_the_rust_tests():
    # src/reference/law.rs: p = (1/3, 2/3), q = (2/3, 1/3) at every prefix, n = 2, drafts 0, 0.
    p = [1 / 3, 2 / 3]
    q = [2 / 3, 1 / 3]
    law = reference.step_law_from_probs([p, p, p], [q, q], [0, 0], method="sps")
    assert abs(law.reject[0, 1] - 0.5) < 1e-15
    assert abs(law.accept_all - 0.25) < 1e-15
    assert abs(law.total() - 1.0) < 1e-15
    assert abs(law.expected_tokens() - (1 * 0.5 + 2 * 0.25 + 3 * 0.25)) < 1e-15


def sps_one_token_law(p, q, x):
    """Token-wise speculative sampling of one draft token x, in NumPy: keep x with
    probability min(1, p(x) / q(x)); else emit from max(0, p - q), normalised."""
    keep = min(1.0, p[x] / q[x])
    residual = np.maximum(p - q, 0.0)
    reject = (1.0 - keep) * residual / residual.sum() if residual.sum() > 0 else 0 * p
    return reject, keep


@pytest.mark.parametrize("seed", range(5))
def test_sps_and_asps_of_one_token_follow_the_formula(seed):
    rng = np.random.default_rng(seed)
    v = 7
    target = rng.normal(size=(2, v)).astype(np.float32)
    draft = rng.normal(size=(1, v)).astype(np.float32)
    x = int(rng.integers(v))
    p, q = softmax(target[0]), softmax(draft[0])
    reject, keep = sps_one_token_law(p, q, x)
    for method in ("sps", "asps"):  # the two rules agree on a draft of one token
        law = reference.step_law(target, draft, [x], method=method)
        assert np.allclose(law.reject[0], reject, atol=1e-12, rtol=0)
        assert abs(law.accept_all - keep) < 1e-12
        assert np.allclose(law.bonus, softmax(target[1]), atol=1e-12, rtol=0)
        assert abs(law.total() - 1.0) < 1e-12


def test_temperature_and_truncation_as_the_rust_examples():
    # src/reference/law.rs, step_law_from_logits: the target keeps only token 0 (top-k 1).
    target = np.array([[2.0, 1.0, 0.0], [0.0, 0.0, 0.0]], dtype=np.float32)
    draft = np.array([[0.0, 1.0, 1.5]], dtype=np.float32)
    law = reference.step_law(target, draft, [2], top_k=1, draft_top_k=2)
    assert law.prob(0, 0) == 1.0
    law = reference.step_law(target, draft, [2], draft_top_k=2)
    assert 0.0 < law.accept_all < 1.0
    # A greedy drafter proposes its argmax with probability 1: kept with probability p(2).
    law = reference.step_law(target, draft, [2], draft_temperature=0.0)
    assert abs(law.accept_all - softmax(target[0])[2]) < 1e-12
    # Temperature 2 on the target alone: the bonus row is the tempered softmax.
    law = reference.step_law(target, draft, [2], temperature=2.0, draft_temperature=1.0)
    assert np.allclose(law.bonus, softmax(target[1], 2.0), atol=1e-12, rtol=0)


def test_a_batch_gives_one_law_per_request():
    rng = np.random.default_rng(7)
    b, n, v = 3, 4, 6
    target = rng.normal(size=(b, n + 1, v)).astype(np.float16)
    draft = (target[:, :n] + 0.3 * rng.normal(size=(b, n, v))).astype(np.float16)
    tokens = rng.integers(v, size=(b, n))
    laws = reference.step_law(target, draft, tokens)
    assert len(laws) == b
    for i, a in enumerate(laws):
        assert abs(a.total() - 1.0) < 1e-12
        one = reference.step_law(target[i], draft[i], tokens[i])
        assert np.array_equal(one.reject, a.reject) and one.accept_all == a.accept_all
        assert np.array_equal(one.bonus, a.bonus)
        assert 1.0 <= a.expected_tokens() <= n + 1


def test_greedy_and_sampled_draws():
    target = np.array([[0.0, 1.0, 2.0], [2.0, 1.0, 0.0]], dtype=np.float32)
    draft = np.array([[0.0, 0.0, 3.0]], dtype=np.float32)
    # Greedy: token 2 is the target's argmax at row 0, then token 0 at row 1.
    assert reference.verify(target, draft, [2], temperature=0.0) == (1, 0)
    # Draws at temperature 1: only outcomes the law gives mass, the same for the same key.
    law = reference.step_law(target, draft, [2])
    seen = set()
    for seed in range(200):
        accepted, token = reference.verify(target, draft, [2], seed=seed, offset=3)
        assert law.prob(accepted, token) > 0
        assert reference.verify(target, draft, [2], seed=seed, offset=3) == (accepted, token)
        seen.add((accepted, token))
    assert len(seen) > 1
    accepted, tokens = reference.verify(target[None], draft[None], [[2]], seed=[5], offset=0)
    assert accepted.shape == (1,) and tokens.shape == (1,)


def test_a_chain_as_a_tree_is_asps_under_traversal_verification():
    rng = np.random.default_rng(3)
    n, v = 3, 5
    target = rng.normal(size=(n + 1, v)).astype(np.float32)
    draft = rng.normal(size=(n, v)).astype(np.float32)
    x = rng.integers(v, size=n)
    chain = reference.step_law(target, draft, x)
    parents = [0] + list(range(n))
    tokens = [0] + list(x)
    law = reference.tree_law(target, parents, tokens, draft_logits=draft, rule="tv")
    assert law.shape == (n + 1, v)
    assert np.allclose(law[:n], chain.reject, atol=1e-12, rtol=0)
    assert np.allclose(law[n], chain.accept_all * chain.bonus, atol=1e-12, rtol=0)
    # Deterministic children: TV and RRS agree; no draft rows.
    det = [reference.tree_law(target, parents, tokens, rule=r, sibling_law="deterministic")
           for r in ("tv", "rrs")]
    assert np.allclose(det[0], det[1], atol=1e-12, rtol=0)
    assert abs(det[0].sum() - 1.0) < 1e-12


@pytest.mark.parametrize("rule", ["tv", "rrs"])
def test_tree_draws_follow_the_tree_law(rule):
    # 3000 draws (seeds 0..2999) of one tree step against tree_law: a chi-square over the
    # outcomes of expected count >= 5 (the rest pooled), at significance 0.001.
    rng = np.random.default_rng(4)
    parents, tokens = [0, 0, 0, 1], [0, 1, 3, 2]
    target = rng.normal(size=(4, 4)).astype(np.float32)
    draft = rng.normal(size=(3, 4)).astype(np.float32)
    law = reference.tree_law(target, parents, tokens, draft_logits=draft, rule=rule)
    draws = 3000
    counts = np.zeros_like(law)
    for seed in range(draws):
        node, token = reference.tree_verify(target, parents, tokens, draft_logits=draft,
                                            rule=rule, seed=seed, offset=1)
        assert law[node, token] > 0
        counts[node, token] += 1
    expected = law.ravel() * draws
    big = expected >= 5
    observed = np.append(counts.ravel()[big], counts.ravel()[~big].sum())
    want = np.append(expected[big], expected[~big].sum())
    keep = want > 0
    chi2 = (((observed - want) ** 2)[keep] / want[keep]).sum()
    dof = keep.sum() - 1
    # The 0.999 quantile of chi-square, by the Wilson-Hilferty approximation.
    z = 3.090
    limit = dof * (1 - 2 / (9 * dof) + z * np.sqrt(2 / (9 * dof))) ** 3
    assert chi2 < limit, (chi2, limit, dof)
    # Greedy: down the children whose token is their parent row's argmax, then that row's.
    u = 0
    while True:
        best = int(np.argmax(target[u]))
        child = [i for i in range(1, 4) if parents[i] == u and tokens[i] == best]
        if not child:
            break
        u = child[0]
    assert reference.tree_verify(target, parents, tokens, draft_logits=draft,
                                 temperature=0.0) == (u, best)


def test_bad_arguments_raise_clear_errors():
    target = np.zeros((2, 4), dtype=np.float32)
    draft = np.zeros((1, 4), dtype=np.float32)
    with pytest.raises(TypeError, match="float64"):
        reference.step_law(target.astype(np.float64), draft, [1])
    with pytest.raises(TypeError, match="differ|are float32"):
        reference.step_law(target, draft.astype(np.float16), [1])
    with pytest.raises(TypeError, match="integers"):
        reference.step_law(target, draft, [1.5])
    with pytest.raises(ValueError, match="want"):
        reference.step_law(target, draft[:, :3], [1])
    with pytest.raises(ValueError, match="outside"):
        reference.step_law(target, draft, [4])
    with pytest.raises(ValueError, match="method"):
        reference.step_law(target, draft, [1], method="fast")
    nan = target.copy()
    nan[1, 2] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        reference.step_law(nan, draft, [1])
    with pytest.raises(ValueError, match="top"):
        reference.step_law(target, draft, [1], top_p=1.5)
    with pytest.raises(ValueError, match="emperature"):
        reference.step_law(target, draft, [1], temperature=-1.0)
    law = reference.step_law(target, draft, [1])
    with pytest.raises(ValueError, match="outcome"):
        law.prob(2, 0)
    with pytest.raises(ValueError, match="outcome"):
        law.prob(0, 4)
    with pytest.raises(ValueError, match="rule"):
        reference.tree_law(target, [0, 0], [0, 1], draft_logits=draft[:1], rule="best")


def test_the_package_exports_the_reference():
    assert asps.reference is reference
    assert {"step_law", "step_law_from_probs", "verify", "tree_law",
            "tree_verify"} <= set(reference.__all__)
