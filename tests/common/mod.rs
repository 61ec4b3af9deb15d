//! Test support: autoregressive toy models, exact enumeration of a step's output law over all
//! drafts, and a chi-square goodness-of-fit test.
#![allow(dead_code)]

use std::collections::HashMap;

use asps::reference::{StepLaw, step_law};
use asps::{Method, Outcome};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

pub mod chi2;
pub mod tree;
pub use chi2::chi2_sf;

/// How the target and draft distributions relate at every prefix.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Relation {
    /// Independent random distributions with full support.
    Random,
    /// q = p.
    Equal,
    /// p and q live on disjoint sets of tokens.
    Disjoint,
    /// p is a point mass.
    OneHotP,
    /// q is a point mass.
    OneHotQ,
    /// q is 0 on some tokens where p > 0.
    QZeroWhereP,
    /// p is 0 on some tokens where q > 0.
    PZeroWhereQ,
    /// q is p perturbed by about 1e-9.
    NearlyEqual,
}

impl Relation {
    pub const ALL: [Relation; 8] = [
        Relation::Random,
        Relation::Equal,
        Relation::Disjoint,
        Relation::OneHotP,
        Relation::OneHotQ,
        Relation::QZeroWhereP,
        Relation::PZeroWhereQ,
        Relation::NearlyEqual,
    ];
}

/// A random distribution over `vocab` tokens with full support (weights u^2, u uniform).
pub fn random_dist(rng: &mut StdRng, vocab: usize) -> Vec<f64> {
    let w: Vec<f64> = (0..vocab)
        .map(|_| {
            let u: f64 = rng.random();
            0.01 + u * u
        })
        .collect();
    normalise(w)
}

pub fn normalise(w: Vec<f64>) -> Vec<f64> {
    let s: f64 = w.iter().sum();
    w.into_iter().map(|x| x / s).collect()
}

/// A random distribution supported on `support` only.
fn dist_on(rng: &mut StdRng, vocab: usize, support: &[usize]) -> Vec<f64> {
    let mut w = vec![0.0; vocab];
    for &v in support {
        let u: f64 = rng.random();
        w[v] = 0.05 + u;
    }
    normalise(w)
}

/// (p, q) for one prefix under `relation`. Needs vocab >= 2.
pub fn pair(rng: &mut StdRng, vocab: usize, relation: Relation) -> (Vec<f64>, Vec<f64>) {
    let all: Vec<usize> = (0..vocab).collect();
    let split = rng.random_range(1..vocab);
    let mut shuffled = all.clone();
    for i in (1..vocab).rev() {
        shuffled.swap(i, rng.random_range(0..=i));
    }
    let (left, right) = shuffled.split_at(split);
    match relation {
        Relation::Random => (random_dist(rng, vocab), random_dist(rng, vocab)),
        Relation::Equal => {
            let p = random_dist(rng, vocab);
            (p.clone(), p)
        }
        Relation::Disjoint => (dist_on(rng, vocab, left), dist_on(rng, vocab, right)),
        Relation::OneHotP => (dist_on(rng, vocab, &left[..1]), random_dist(rng, vocab)),
        Relation::OneHotQ => (random_dist(rng, vocab), dist_on(rng, vocab, &left[..1])),
        Relation::QZeroWhereP => (random_dist(rng, vocab), dist_on(rng, vocab, right)),
        Relation::PZeroWhereQ => (dist_on(rng, vocab, right), random_dist(rng, vocab)),
        Relation::NearlyEqual => {
            let p = random_dist(rng, vocab);
            let q = normalise(
                p.iter()
                    .map(|x| x * (1.0 + 1e-9 * (rng.random::<f64>() - 0.5)))
                    .collect(),
            );
            (p, q)
        }
    }
}

/// Target and draft models over `vocab` tokens, defined on every prefix of length <= depth.
pub struct ArModels {
    pub vocab: usize,
    target: HashMap<Vec<u32>, Vec<f64>>,
    draft: HashMap<Vec<u32>, Vec<f64>>,
}

impl ArModels {
    /// Models for drafts of `n` tokens (target defined up to prefixes of length n).
    pub fn new(seed: u64, vocab: usize, n: usize, relation: Relation) -> Self {
        let mut rng = StdRng::seed_from_u64(seed);
        let mut target = HashMap::new();
        let mut draft = HashMap::new();
        for len in 0..=n {
            for prefix in all_sequences(vocab, len) {
                let (p, q) = pair(&mut rng, vocab, relation);
                target.insert(prefix.clone(), p);
                draft.insert(prefix, q);
            }
        }
        ArModels {
            vocab,
            target,
            draft,
        }
    }

    /// The same (p, q) pair at every prefix (the "same law at every prefix" case).
    pub fn stationary(vocab: usize, n: usize, p: &[f64], q: &[f64]) -> Self {
        let mut target = HashMap::new();
        let mut draft = HashMap::new();
        for len in 0..=n {
            for prefix in all_sequences(vocab, len) {
                target.insert(prefix.clone(), p.to_vec());
                draft.insert(prefix, q.to_vec());
            }
        }
        ArModels {
            vocab,
            target,
            draft,
        }
    }

    /// Models from their rows: `target[prefix]` for prefixes of length <= n, `draft[prefix]`
    /// for prefixes of length < n.
    pub fn from_rows(
        vocab: usize,
        target: HashMap<Vec<u32>, Vec<f64>>,
        draft: HashMap<Vec<u32>, Vec<f64>>,
    ) -> Self {
        ArModels {
            vocab,
            target,
            draft,
        }
    }

    pub fn p(&self, prefix: &[u32]) -> &[f64] {
        &self.target[prefix]
    }

    pub fn q(&self, prefix: &[u32]) -> &[f64] {
        &self.draft[prefix]
    }

    /// The target probability of the whole sequence `z` after `prefix`.
    pub fn p_seq(&self, prefix: &[u32], z: &[u32]) -> f64 {
        let mut ctx = prefix.to_vec();
        let mut prob = 1.0;
        for &t in z {
            prob *= self.p(&ctx)[t as usize];
            ctx.push(t);
        }
        prob
    }

    /// The draft probability of the draft `x`.
    pub fn q_seq(&self, x: &[u32]) -> f64 {
        let mut ctx = Vec::new();
        let mut prob = 1.0;
        for &t in x {
            prob *= self.q(&ctx)[t as usize];
            ctx.push(t);
        }
        prob
    }

    /// The rows a verifier sees for draft `x`: target rows at prefixes x_<r (r = 0..=n) and
    /// draft rows at x_<r (r = 0..n).
    pub fn rows(&self, x: &[u32]) -> (Vec<Vec<f64>>, Vec<Vec<f64>>) {
        let target = (0..=x.len()).map(|r| self.p(&x[..r]).to_vec()).collect();
        let draft = (0..x.len()).map(|r| self.q(&x[..r]).to_vec()).collect();
        (target, draft)
    }

    /// The law of the step for draft `x`.
    pub fn law(&self, method: Method, x: &[u32]) -> StepLaw {
        let (target, draft) = self.rows(x);
        step_law(method, &target, &draft, x).expect("valid toy inputs")
    }

    /// P(Y = y) for every emitted sequence y, averaged over drafts x ~ q; also the expected
    /// number of emitted tokens.
    pub fn output_law(&self, method: Method, n: usize) -> (HashMap<Vec<u32>, f64>, f64) {
        self.output_law_of(n, |x| self.law(method, x))
    }

    /// [`ArModels::output_law`] with the law of each draft's step given by `law_of` (drafts
    /// drawn from these models' draft rows).
    pub fn output_law_of(
        &self,
        n: usize,
        law_of: impl Fn(&[u32]) -> StepLaw,
    ) -> (HashMap<Vec<u32>, f64>, f64) {
        let mut out: HashMap<Vec<u32>, f64> = HashMap::new();
        let mut expected = 0.0;
        for x in all_sequences(self.vocab, n) {
            let qx = self.q_seq(&x);
            if qx == 0.0 {
                continue;
            }
            let law = law_of(&x);
            let total = law.total();
            assert!(
                (total - 1.0).abs() < 1e-12,
                "law sums to {total} for draft {x:?}"
            );
            expected += qx * law.expected_tokens();
            for (k, row) in law.reject.iter().enumerate() {
                for (v, &pr) in row.iter().enumerate() {
                    if pr != 0.0 {
                        let mut y = x[..k].to_vec();
                        y.push(v as u32);
                        *out.entry(y).or_default() += qx * pr;
                    }
                }
            }
            for (v, &pb) in law.bonus.iter().enumerate() {
                if law.accept_all * pb != 0.0 {
                    let mut y = x.clone();
                    y.push(v as u32);
                    *out.entry(y).or_default() += qx * law.accept_all * pb;
                }
            }
        }
        (out, expected)
    }
}

/// Every sequence of `len` tokens over `vocab`.
pub fn all_sequences(vocab: usize, len: usize) -> Vec<Vec<u32>> {
    let mut out = vec![Vec::new()];
    for _ in 0..len {
        out = out
            .into_iter()
            .flat_map(|s| {
                (0..vocab as u32).map(move |t| {
                    let mut s = s.clone();
                    s.push(t);
                    s
                })
            })
            .collect();
    }
    out
}

/// The largest violation of the exactness statement of docs/design.md ("The math"): for every z of length n + 1,
/// sum_k P(Y = z_1..z_k) p(z_{k+1..n+1} | z_1..z_k) must equal p(z_1..z_{n+1}).
pub fn exactness_error(models: &ArModels, output: &HashMap<Vec<u32>, f64>, n: usize) -> f64 {
    let mut worst: f64 = 0.0;
    for z in all_sequences(models.vocab, n + 1) {
        let completed: f64 = (1..=n + 1)
            .map(|k| {
                let py = output.get(&z[..k]).copied().unwrap_or(0.0);
                py * models.p_seq(&z[..k], &z[k..])
            })
            .sum();
        worst = worst.max((completed - models.p_seq(&[], &z)).abs());
    }
    worst
}

/// Result of a chi-square goodness-of-fit test.
#[derive(Debug)]
pub struct Chi2 {
    pub stat: f64,
    pub df: usize,
    pub p_value: f64,
    /// Draws that landed on outcomes of probability 0 (each one alone refutes the law).
    pub impossible: u64,
}

/// Tests observed outcome counts against `law`. Outcomes are sorted by expected count and
/// merged, in that order, into bins of expected count >= 5 (the grouping depends on the law only).
pub fn chi2_against_law(counts: &HashMap<Outcome, u64>, law: &StepLaw) -> Chi2 {
    let draws: u64 = counts.values().sum();
    let n = law.draft_len();
    let mut cells: Vec<(f64, u64)> = Vec::new();
    let mut seen = 0u64;
    let mut add = |prob: f64, outcome: Outcome, cells: &mut Vec<(f64, u64)>| {
        if prob > 0.0 {
            let c = counts.get(&outcome).copied().unwrap_or(0);
            seen += c;
            cells.push((prob * draws as f64, c));
        }
    };
    for (k, row) in law.reject.iter().enumerate() {
        for (v, &p) in row.iter().enumerate() {
            add(
                p,
                Outcome {
                    accepted: k,
                    token: v as u32,
                },
                &mut cells,
            );
        }
    }
    for (v, &b) in law.bonus.iter().enumerate() {
        add(
            law.accept_all * b,
            Outcome {
                accepted: n,
                token: v as u32,
            },
            &mut cells,
        );
    }
    let impossible = draws - seen;
    cells.sort_by(|a, b| a.0.total_cmp(&b.0));
    let mut bins: Vec<(f64, u64)> = Vec::new();
    let mut acc = (0.0, 0u64);
    for (e, o) in cells {
        acc = (acc.0 + e, acc.1 + o);
        if acc.0 >= 5.0 {
            bins.push(acc);
            acc = (0.0, 0);
        }
    }
    if acc.0 > 0.0 {
        match bins.last_mut() {
            Some(last) => *last = (last.0 + acc.0, last.1 + acc.1),
            None => bins.push(acc),
        }
    }
    let stat: f64 = bins.iter().map(|&(e, o)| (o as f64 - e).powi(2) / e).sum();
    let df = bins.len().saturating_sub(1).max(1);
    Chi2 {
        stat,
        df,
        p_value: chi2_sf(stat, df as f64),
        impossible,
    }
}
