//! The crate's f64 CPU reference on what the Python layer has already shaped and typed (logits
//! as the bytes of C-contiguous rows, with their dtype and shape; sampling parameters as
//! numbers). Every error of the reference comes back as a `ValueError` carrying its message.

use asps::reference::{
    Sampling, SiblingLaw, StepLaw, Tree, TreeRule, Truncation, step_law, step_law_from_logits,
    tree_law_from_logits, tree_sample_from_logits, verify_logits_sampled,
};
use asps::{Logit, Method, NoiseKey};
use half::{bf16, f16};
use pyo3::prelude::*;

use crate::value_error;

pub(crate) fn method_of(name: &str) -> PyResult<Method> {
    match name {
        "asps" => Ok(Method::Asps),
        "sps" => Ok(Method::Sps),
        "greedy" => Ok(Method::Greedy),
        _ => Err(value_error(format!(
            "method {name:?}: one of \"asps\", \"sps\", \"greedy\""
        ))),
    }
}

/// `rows` rows of `vocab` logits from the bytes of a C-contiguous array of `dtype`.
fn rows_of<T: Logit>(
    bytes: &[u8],
    rows: usize,
    vocab: usize,
    decode: fn(&[u8]) -> T,
) -> PyResult<Vec<Vec<T>>> {
    let size = std::mem::size_of::<T>();
    if bytes.len() != rows * vocab * size {
        return Err(value_error(format!(
            "{} bytes hold no {rows} x {vocab} array of {size}-byte values",
            bytes.len()
        )));
    }
    Ok(bytes
        .chunks_exact(vocab * size)
        .map(|row| row.chunks_exact(size).map(decode).collect())
        .collect())
}

/// Logits of one of the dtypes the kernels take, decoded from bytes.
enum Rows {
    F32(Vec<Vec<f32>>),
    F16(Vec<Vec<f16>>),
    BF16(Vec<Vec<bf16>>),
}

impl Rows {
    fn new(dtype: &str, bytes: &[u8], rows: usize, vocab: usize) -> PyResult<Self> {
        fn two(b: &[u8]) -> u16 {
            u16::from_ne_bytes([b[0], b[1]])
        }
        Ok(match dtype {
            "float32" => Rows::F32(rows_of(bytes, rows, vocab, |b| {
                f32::from_ne_bytes([b[0], b[1], b[2], b[3]])
            })?),
            "float16" => Rows::F16(rows_of(bytes, rows, vocab, |b| f16::from_bits(two(b)))?),
            "bfloat16" => Rows::BF16(rows_of(bytes, rows, vocab, |b| bf16::from_bits(two(b)))?),
            _ => {
                return Err(value_error(format!(
                    "logits of dtype {dtype}: float32, float16 or bfloat16"
                )));
            }
        })
    }
}

/// Applies `f` to the target's and the draft's rows, which must share one dtype.
macro_rules! with_rows {
    ($target:expr, $draft:expr, |$t:ident, $d:ident| $body:expr) => {
        match ($target, $draft) {
            (Rows::F32($t), Rows::F32($d)) => $body,
            (Rows::F16($t), Rows::F16($d)) => $body,
            (Rows::BF16($t), Rows::BF16($d)) => $body,
            _ => Err(value_error(
                "the target's and the draft's logits differ in dtype",
            )),
        }
    };
}

/// One model's truncation; `None` leaves a parameter off.
fn truncation(top_k: Option<i32>, top_p: Option<f32>, min_p: Option<f32>) -> Truncation {
    Truncation {
        top_k: top_k.unwrap_or(0),
        top_p: top_p.unwrap_or(1.0),
        min_p: min_p.unwrap_or(0.0),
    }
}

/// How a request samples: (temperature, draft temperature, the target's top-k, top-p, min-p,
/// the draft's).
type SamplingArgs = (
    f64,
    Option<f64>,
    Option<i32>,
    Option<f32>,
    Option<f32>,
    Option<i32>,
    Option<f32>,
    Option<f32>,
);

fn sampling_of(s: SamplingArgs) -> Sampling {
    let (temperature, draft_temperature, k, p, m, dk, dp, dm) = s;
    Sampling {
        temperature,
        draft_temperature,
        target: truncation(k, p, m),
        draft: truncation(dk, dp, dm),
    }
}

fn tokens_of(tokens: &[i64], vocab: usize) -> PyResult<Vec<u32>> {
    tokens
        .iter()
        .map(|&t| {
            u32::try_from(t)
                .ok()
                .filter(|&t| (t as usize) < vocab)
                .ok_or_else(|| value_error(format!("draft token {t} is outside 0..{vocab}")))
        })
        .collect()
}

/// A step law as (reject `[n][V]`, accept_all, bonus `[V]`).
type LawParts = (Vec<Vec<f64>>, f64, Vec<f64>);

fn parts(law: StepLaw) -> LawParts {
    (law.reject, law.accept_all, law.bonus)
}

/// One request's step as the reference takes it, decoded from the Python layer's arguments:
/// `target` n + 1 rows and `draft` n rows of `vocab` values of `dtype`, n the draft's length.
struct Step {
    method: Method,
    tokens: Vec<u32>,
    sampling: Sampling,
    target: Rows,
    draft: Rows,
}

impl Step {
    fn new(
        method: &str,
        dtype: &str,
        target: &[u8],
        draft: &[u8],
        tokens: &[i64],
        vocab: usize,
        sampling: SamplingArgs,
    ) -> PyResult<Self> {
        let n = tokens.len();
        Ok(Step {
            method: method_of(method)?,
            tokens: tokens_of(tokens, vocab)?,
            sampling: sampling_of(sampling),
            target: Rows::new(dtype, target, n + 1, vocab)?,
            draft: Rows::new(dtype, draft, n, vocab)?,
        })
    }
}

/// The exact law of one request's step from logits: `target` n + 1 rows, `draft` n rows, both
/// of `vocab` values of `dtype`.
#[pyfunction]
#[allow(clippy::too_many_arguments)]
fn step_law_from_logits_rows(
    method: &str,
    dtype: &str,
    target: &[u8],
    draft: &[u8],
    tokens: Vec<i64>,
    vocab: usize,
    sampling: SamplingArgs,
) -> PyResult<LawParts> {
    let Step {
        method,
        tokens,
        sampling,
        target,
        draft,
    } = Step::new(method, dtype, target, draft, &tokens, vocab, sampling)?;
    with_rows!(target, draft, |t, d| step_law_from_logits(
        method, &t, &d, &tokens, &sampling
    )
    .map(parts)
    .map_err(value_error))
}

/// The exact law of one request's step from probability rows (f64).
#[pyfunction]
fn step_law_from_prob_rows(
    method: &str,
    target: Vec<Vec<f64>>,
    draft: Vec<Vec<f64>>,
    tokens: Vec<i64>,
) -> PyResult<LawParts> {
    let vocab = target.first().map_or(0, Vec::len);
    let tokens = tokens_of(&tokens, vocab)?;
    step_law(method_of(method)?, &target, &draft, &tokens)
        .map(parts)
        .map_err(value_error)
}

/// One request's step drawn with the kernels' noise for (seed, offset): (accepted, token).
#[pyfunction]
#[allow(clippy::too_many_arguments)]
fn verify_rows(
    method: &str,
    dtype: &str,
    target: &[u8],
    draft: &[u8],
    tokens: Vec<i64>,
    vocab: usize,
    sampling: SamplingArgs,
    seed: u64,
    offset: u64,
) -> PyResult<(usize, u32)> {
    let Step {
        method,
        tokens,
        sampling,
        target,
        draft,
    } = Step::new(method, dtype, target, draft, &tokens, vocab, sampling)?;
    let key = NoiseKey::new(seed, offset);
    with_rows!(target, draft, |t, d| verify_logits_sampled(
        method, &t, &d, &tokens, &sampling, key
    )
    .map(|o| (o.accepted, o.token))
    .map_err(value_error))
}

pub(crate) fn tree_rule_of(rule: &str) -> PyResult<TreeRule> {
    match rule {
        "tv" => Ok(TreeRule::Tv),
        "rrs" => Ok(TreeRule::Rrs),
        _ => Err(value_error(format!("rule {rule:?}: \"tv\" or \"rrs\""))),
    }
}

pub(crate) fn sibling_law_of(law: &str) -> PyResult<SiblingLaw> {
    match law {
        "without_replacement" => Ok(SiblingLaw::WithoutReplacement),
        "with_replacement" => Ok(SiblingLaw::WithReplacement),
        "deterministic" => Ok(SiblingLaw::Deterministic),
        _ => Err(value_error(format!(
            "sibling law {law:?}: \"without_replacement\", \"with_replacement\" or \
             \"deterministic\""
        ))),
    }
}

/// One request's tree step as the reference takes it, decoded from the Python layer's
/// arguments: `target` the rows of the N nodes, `draft` those of nodes 0..N-1 (`None`:
/// deterministic children, no draft rows).
struct TreeStep {
    rule: TreeRule,
    law: SiblingLaw,
    tree: Tree,
    sampling: Sampling,
    target: Rows,
    draft: Option<Rows>,
}

impl TreeStep {
    #[allow(clippy::too_many_arguments)]
    fn new(
        rule: &str,
        sibling_law: &str,
        dtype: &str,
        parents: &[i64],
        tokens: &[i64],
        target: &[u8],
        draft: Option<&[u8]>,
        vocab: usize,
        sampling: SamplingArgs,
    ) -> PyResult<Self> {
        let n = parents.len();
        if n == 0 || tokens.len() != n {
            return Err(value_error(format!(
                "a tree of {n} parents and {} tokens: one of each per node, the root's included",
                tokens.len()
            )));
        }
        // The root's entry is not read (as on the GPU).
        let parent = std::iter::once(Ok(0))
            .chain(parents[1..].iter().map(|&p| {
                usize::try_from(p).map_err(|_| value_error(format!("parent {p} is negative")))
            }))
            .collect::<PyResult<Vec<usize>>>()?;
        let mut token = tokens_of(&tokens[1..], vocab)?;
        token.insert(0, 0);
        Ok(TreeStep {
            rule: tree_rule_of(rule)?,
            law: sibling_law_of(sibling_law)?,
            tree: Tree { parent, token },
            sampling: sampling_of(sampling),
            target: Rows::new(dtype, target, n, vocab)?,
            // Draft rows for nodes 0..n-1; the last node's is never read (it has no child).
            draft: draft
                .map(|bytes| Rows::new(dtype, bytes, n - 1, vocab))
                .transpose()?,
        })
    }
}

/// Applies `f(target, draft)` to a tree step's rows, the draft's as one optional row per node
/// of the `n` (the last node's always `None`).
macro_rules! with_tree_rows {
    ($target_rows:expr, $draft_rows:expr, $n:expr, |$t:ident, $d:ident| $body:expr) => {{
        let n = $n;
        macro_rules! run {
            ($rows:expr, $drafts:expr) => {{
                let $t = $rows;
                let mut $d: Vec<Option<_>> = $drafts.into_iter().map(Some).collect();
                $d.resize(n, None);
                $body
            }};
        }
        match ($target_rows, $draft_rows) {
            (Rows::F32(t), None) => run!(t, Vec::<Vec<f32>>::new()),
            (Rows::F16(t), None) => run!(t, Vec::<Vec<f16>>::new()),
            (Rows::BF16(t), None) => run!(t, Vec::<Vec<bf16>>::new()),
            (Rows::F32(t), Some(Rows::F32(d))) => run!(t, d),
            (Rows::F16(t), Some(Rows::F16(d))) => run!(t, d),
            (Rows::BF16(t), Some(Rows::BF16(d))) => run!(t, d),
            _ => Err(value_error(
                "the target's and the draft's logits differ in dtype",
            )),
        }
    }};
}

/// The exact law of one step over a draft tree: P(accepted node u, next token v), `[N][V]`.
#[pyfunction]
#[allow(clippy::too_many_arguments)]
fn tree_law_rows(
    rule: &str,
    sibling_law: &str,
    dtype: &str,
    parents: Vec<i64>,
    tokens: Vec<i64>,
    target: &[u8],
    draft: Option<&[u8]>,
    vocab: usize,
    sampling: SamplingArgs,
) -> PyResult<Vec<Vec<f64>>> {
    let step = TreeStep::new(
        rule,
        sibling_law,
        dtype,
        &parents,
        &tokens,
        target,
        draft,
        vocab,
        sampling,
    )?;
    let TreeStep {
        rule,
        law,
        tree,
        sampling,
        target,
        draft,
    } = step;
    with_tree_rows!(target, draft, tree.len(), |t, d| tree_law_from_logits(
        rule, &tree, &t, &d, law, &sampling
    )
    .map(|l| l.emit)
    .map_err(value_error))
}

/// One tree step drawn with the kernels' noise for (seed, offset): (accepted node, token).
#[pyfunction]
#[allow(clippy::too_many_arguments)]
fn tree_verify_rows(
    rule: &str,
    sibling_law: &str,
    dtype: &str,
    parents: Vec<i64>,
    tokens: Vec<i64>,
    target: &[u8],
    draft: Option<&[u8]>,
    vocab: usize,
    sampling: SamplingArgs,
    seed: u64,
    offset: u64,
) -> PyResult<(usize, u32)> {
    let step = TreeStep::new(
        rule,
        sibling_law,
        dtype,
        &parents,
        &tokens,
        target,
        draft,
        vocab,
        sampling,
    )?;
    let TreeStep {
        rule,
        law,
        tree,
        sampling,
        target,
        draft,
    } = step;
    let key = NoiseKey::new(seed, offset);
    with_tree_rows!(target, draft, tree.len(), |t, d| tree_sample_from_logits(
        rule, &tree, &t, &d, law, &sampling, key
    )
    .map(|o| (o.node, o.token))
    .map_err(value_error))
}

pub(crate) fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(step_law_from_logits_rows, m)?)?;
    m.add_function(wrap_pyfunction!(step_law_from_prob_rows, m)?)?;
    m.add_function(wrap_pyfunction!(verify_rows, m)?)?;
    m.add_function(wrap_pyfunction!(tree_law_rows, m)?)?;
    m.add_function(wrap_pyfunction!(tree_verify_rows, m)?)?;
    Ok(())
}
