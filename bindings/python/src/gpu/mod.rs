//! The GPU verification behind `asps.verify` and `asps.verify_tree`: one call described by
//! device addresses, strides and per-request parameters (the Python layer read them from the
//! caller's arrays: bindings/python/python/asps/gpu.py), turned into the C ABI's
//! [`AspsVerifyArgs`] or [`AspsTreeVerifyArgs`] once, checked by the crate, and handed to the
//! raw front ([`Verifier::verify_raw`], [`TreeVerifier::verify_raw`]) on the caller's stream,
//! with no copy from the host and no wait.
//!
//! [`Verifier::verify_raw`]: asps::cuda::Verifier::verify_raw
//! [`TreeVerifier::verify_raw`]: asps::cuda::TreeVerifier::verify_raw

mod driver;
mod params;
mod slot;

pub(crate) use driver::{RestoreContext, cuda_error};

use asps::capi::{AspsTreeVerifyArgs, AspsVerifyArgs};
use asps::reference::TreeRule;
use cudarc::driver::sys;
use pyo3::prelude::*;

use crate::reference::{method_of, tree_rule_of};
use crate::{crate_error, value_error};
use driver::wait_for;
use params::{Param, Writer};
use slot::{Need, Slot, cache, gpu, slot};

/// What a chain call and a tree call share (`_Call` in bindings/python/python/asps/gpu.py).
/// Strides are in elements; the row strides are a tree's node strides.
#[derive(FromPyObject)]
#[pyo3(from_item_all)]
struct Common<'py> {
    device: usize,
    stream: usize,
    /// Streams the arrays' producers wrote them on, which the call waits for.
    wait_for: Vec<usize>,
    /// Arrays whose device the caller's object did not say (`__cuda_array_interface__`): their
    /// names and addresses, checked to be device memory of `device`.
    unplaced: Vec<(String, u64)>,
    dtype: String,
    batch: i32,
    vocab: i32,
    target: u64,
    target_batch_stride: i64,
    target_row_stride: i64,
    draft: u64,
    draft_batch_stride: i64,
    draft_row_stride: i64,
    seed: Param<'py>,
    offset: Param<'py>,
    temperature: Param<'py>,
    draft_temperature: Option<Param<'py>>,
    top_k: Option<Param<'py>>,
    top_p: Option<Param<'py>>,
    min_p: Option<Param<'py>>,
    draft_top_k: Option<Param<'py>>,
    draft_top_p: Option<Param<'py>>,
    draft_min_p: Option<Param<'py>>,
    out_num_emitted: u64,
    out_status: u64,
}

/// A chain call's own arguments.
#[derive(FromPyObject)]
#[pyo3(from_item_all)]
struct Chain<'py> {
    method: String,
    max_draft: i32,
    draft_tokens: u64,
    draft_lens: Param<'py>,
    out_tokens: u64,
    out_num_accepted: u64,
}

/// A tree call's own arguments.
#[derive(FromPyObject)]
#[pyo3(from_item_all)]
struct TreeCall<'py> {
    rule: String,
    max_nodes: i32,
    num_nodes: Param<'py>,
    parents: u64,
    tokens: u64,
    /// AspsSiblingLaw codes.
    sibling_law: Param<'py>,
    out_node: u64,
    out_token: u64,
}

/// AspsDtype's code of a dtype's name.
fn dtype_code(dtype: &str) -> PyResult<i32> {
    match dtype {
        "float32" => Ok(0),
        "float16" => Ok(1),
        "bfloat16" => Ok(2),
        _ => Err(value_error(format!(
            "logits of dtype {dtype}: float32, float16 or bfloat16"
        ))),
    }
}

fn positive(value: i32, what: &str) -> PyResult<usize> {
    usize::try_from(value)
        .ok()
        .filter(|&v| v > 0)
        .ok_or_else(|| value_error(format!("{what}: {value}")))
}

/// Queues on the call's stream what must precede the kernels: the waits for the producers'
/// streams, then the parameter fills.
fn queue_before_kernels(common: &Common<'_>, writer: Writer<'_>, batch: usize) -> PyResult<()> {
    let stream = common.stream as sys::CUstream;
    for &producer in &common.wait_for {
        wait_for(stream, producer as sys::CUstream)?;
    }
    writer.queue(batch, stream)
}

/// Verifies one batch of chains: checks the call (the crate's checks, as the C ABI's), then
/// queues the waits, the parameter fills and the kernels on the caller's stream, and returns.
#[pyfunction]
fn gpu_verify(common: Common<'_>, chain: Chain<'_>) -> PyResult<()> {
    let method = match method_of(&chain.method)? {
        asps::Method::Asps => 0,
        asps::Method::Sps => 1,
        asps::Method::Greedy => 2,
    };
    let batch = positive(common.batch, "the batch's requests")?;
    let max_draft = positive(chain.max_draft, "the draft's tokens")?;
    let _restore = RestoreContext::new();
    let mut cache = cache();
    let need = Need::Chain { batch, max_draft };
    let Slot {
        params: Some(params),
        chain: Some(verifier),
        ..
    } = slot(cache.get_or_insert_default(), &common, &need)?
    else {
        unreachable!("slot() made room for a chain call")
    };
    let mut w = Writer::new(params);
    let args = AspsVerifyArgs {
        struct_size: std::mem::size_of::<AspsVerifyArgs>() as u32,
        method,
        dtype: dtype_code(&common.dtype)?,
        batch: common.batch,
        max_draft: chain.max_draft,
        vocab: common.vocab,
        target_logits: common.target as *const std::ffi::c_void,
        target_batch_stride: common.target_batch_stride,
        target_row_stride: common.target_row_stride,
        draft_logits: common.draft as *const std::ffi::c_void,
        draft_batch_stride: common.draft_batch_stride,
        draft_row_stride: common.draft_row_stride,
        draft_tokens: chain.draft_tokens as *const i32,
        draft_lens: w.word(Some(&chain.draft_lens), 0, |n: i32| n as u32)? as *const i32,
        seeds: w.wide(&common.seed, 0)? as *const u64,
        offsets: w.wide(&common.offset, 1)? as *mut u64,
        out_tokens: chain.out_tokens as *mut i32,
        out_num_emitted: common.out_num_emitted as *mut i32,
        out_num_accepted: chain.out_num_accepted as *mut i32,
        out_status: common.out_status as *mut i32,
        sampling: w.sampling(&common)?,
    };
    verifier.check(&args).map_err(crate_error)?;
    queue_before_kernels(&common, w, batch)?;
    // SAFETY: the Python layer took every address from a live CUDA array of the shape and
    // strides it passed (the crate checked them against each other above; the driver placed
    // the arrays whose objects did not say their device), the caller keeps those arrays alive
    // and untouched until the stream has run the call (asps.verify's contract, as for any
    // asynchronous CUDA library), and the stream is the caller's live stream or a special
    // handle. The slot's workspace and parameter buffer belong to this stream alone (one slot
    // per stream), so earlier calls on them are ordered before this one.
    unsafe { verifier.verify_raw(&args, common.stream as sys::CUstream) }.map_err(crate_error)
}

/// Verifies one batch of draft trees, as [`gpu_verify`] does chains.
#[pyfunction]
fn gpu_verify_tree(common: Common<'_>, tree: TreeCall<'_>) -> PyResult<()> {
    let rule = match tree_rule_of(&tree.rule)? {
        TreeRule::Tv => 0,
        TreeRule::Rrs => 1,
    };
    let batch = positive(common.batch, "the batch's requests")?;
    let max_nodes = positive(tree.max_nodes, "the tree's nodes")?;
    let _restore = RestoreContext::new();
    let mut cache = cache();
    let need = Need::Tree { batch, max_nodes };
    let Slot {
        params: Some(params),
        tree: Some(verifier),
        ..
    } = slot(cache.get_or_insert_default(), &common, &need)?
    else {
        unreachable!("slot() made room for a tree call")
    };
    let mut w = Writer::new(params);
    let args = AspsTreeVerifyArgs {
        struct_size: std::mem::size_of::<AspsTreeVerifyArgs>() as u32,
        rule,
        dtype: dtype_code(&common.dtype)?,
        batch: common.batch,
        max_nodes: tree.max_nodes,
        vocab: common.vocab,
        target_logits: common.target as *const std::ffi::c_void,
        target_batch_stride: common.target_batch_stride,
        target_node_stride: common.target_row_stride,
        draft_logits: common.draft as *const std::ffi::c_void,
        draft_batch_stride: common.draft_batch_stride,
        draft_node_stride: common.draft_row_stride,
        num_nodes: w.word(Some(&tree.num_nodes), 0, |n: i32| n as u32)? as *const i32,
        parents: tree.parents as *const i32,
        tokens: tree.tokens as *const i32,
        sibling_laws: w.word(Some(&tree.sibling_law), 9, |n: i32| n as u32)? as *const i32,
        seeds: w.wide(&common.seed, 0)? as *const u64,
        offsets: w.wide(&common.offset, 1)? as *mut u64,
        out_node: tree.out_node as *mut i32,
        out_token: tree.out_token as *mut i32,
        out_num_emitted: common.out_num_emitted as *mut i32,
        out_status: common.out_status as *mut i32,
        sampling: w.sampling(&common)?,
    };
    verifier.check(&args).map_err(crate_error)?;
    queue_before_kernels(&common, w, batch)?;
    // SAFETY: as in gpu_verify, for the tree call's arrays (include/asps.h gives their extents).
    unsafe { verifier.verify_raw(&args, common.stream as sys::CUstream) }.map_err(crate_error)
}

/// Why the GPU entry points cannot run on device `ordinal` (no driver library, no such device,
/// a build without kernels), or None when they can: the kernels are then loaded there.
#[pyfunction]
fn gpu_error(py: Python<'_>, ordinal: usize) -> Option<String> {
    let _restore = RestoreContext::new();
    let mut cache = cache();
    gpu(cache.get_or_insert_default(), ordinal)
        .err()
        .map(|e| e.value(py).to_string())
}

pub(crate) fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(gpu_verify, m)?)?;
    m.add_function(wrap_pyfunction!(gpu_verify_tree, m)?)?;
    m.add_function(wrap_pyfunction!(gpu_error, m)?)?;
    Ok(())
}
