//! The safe front of tree verification: cudarc buffers in, cudarc buffers out, every length
//! checked.

use std::ffi::c_void;
use std::sync::Arc;

use cudarc::driver::{CudaSlice, CudaStream, CudaView, DevicePtr, DevicePtrMut, DeviceRepr};

use super::verifier::TreeVerifier;
use crate::capi::bindings::AspsTreeVerifyArgs;
use crate::cuda::RequestStatus;
use crate::cuda::call_args::extent;
use crate::cuda::verify::{input, need, sampling_args};
use crate::cuda::{BatchLogits, SamplingInputs};
use crate::dtype::Logit;
use crate::error::{Error, Result};
use crate::reference::TreeRule;

/// The inputs of one tree call: the safe front's form of [`AspsTreeVerifyArgs`] (include/asps.h
/// describes every field), converted to it once by [`TreeVerifier::verify`].
#[derive(Debug)]
pub struct TreeInputs<'a, T> {
    /// The rule for children drawn from draft rows.
    pub rule: TreeRule,
    /// B, the number of requests.
    pub batch: usize,
    /// The node slots of each request (its tree's nodes, root included, are at most this).
    pub max_nodes: usize,
    /// V, the vocabulary size.
    pub vocab: usize,
    /// Target logits `[B, max_nodes, V]`: node u's row is the target's after u's path.
    pub target: BatchLogits<'a, T>,
    /// Draft logits `[B, max_nodes - 1, V]`: node u's row is the one its children were drawn
    /// from. `None` when every request's children are deterministic (or it is greedy).
    pub draft: Option<BatchLogits<'a, T>>,
    /// `[B]`: nodes in each request's tree, root included.
    pub num_nodes: CudaView<'a, i32>,
    /// `[B, max_nodes]`: each node's parent, before it (entry 0 of a request is not read).
    pub parents: CudaView<'a, i32>,
    /// `[B, max_nodes]`: each node's token (entry 0 of a request is not read).
    pub tokens: CudaView<'a, i32>,
    /// `[B]`: each request's sibling law ([`AspsTreeVerifyArgs::sibling_law_code`]).
    pub sibling_laws: CudaView<'a, i32>,
    /// `[B]`: each request's seed.
    pub seeds: CudaView<'a, u64>,
    /// How each request samples.
    pub sampling: SamplingInputs<'a>,
}

/// Device outputs of tree calls: made once, reused.
#[derive(Debug)]
pub struct TreeOutputs {
    node: CudaSlice<i32>,
    token: CudaSlice<i32>,
    num_emitted: CudaSlice<i32>,
    status: CudaSlice<i32>,
    /// B of the last call.
    last: Option<usize>,
}

/// One request's result of a tree call, read back to the host.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VerifiedTree {
    /// Whether the request was verified, or what was wrong with it.
    pub status: RequestStatus,
    /// The accepted node (0, the root, when no draft token was kept). The emitted tokens are
    /// those of its path below the root, then `token`.
    pub node: usize,
    /// The token after the accepted node's path.
    pub token: u32,
    /// Tokens emitted: the accepted node's depth + 1 (0 unless Ok).
    pub emitted: usize,
}

impl TreeOutputs {
    /// Room for `max_batch` requests.
    pub fn new(stream: &Arc<CudaStream>, max_batch: usize) -> Result<Self> {
        if max_batch == 0 {
            return Err(Error::Shape("outputs for 0 requests".into()));
        }
        Ok(TreeOutputs {
            node: stream.alloc_zeros(max_batch)?,
            token: stream.alloc_zeros(max_batch)?,
            num_emitted: stream.alloc_zeros(max_batch)?,
            status: stream.alloc_zeros(max_batch)?,
            last: None,
        })
    }

    /// The accepted node of each request of the last call (-1 unless Ok).
    pub fn node(&self) -> &CudaSlice<i32> {
        &self.node
    }

    /// The token after each accepted node's path (-1 unless Ok).
    pub fn token(&self) -> &CudaSlice<i32> {
        &self.token
    }

    /// Tokens emitted per request (0 unless Ok).
    pub fn num_emitted(&self) -> &CudaSlice<i32> {
        &self.num_emitted
    }

    /// Per-request status codes ([`RequestStatus::from_code`]).
    pub fn status(&self) -> &CudaSlice<i32> {
        &self.status
    }

    /// Copies the last call's results to the host (this synchronises `stream`).
    pub fn read(&self, stream: &Arc<CudaStream>) -> Result<Vec<VerifiedTree>> {
        let b = self.last.ok_or_else(|| {
            Error::InvalidArgument("no tree verification was run into these outputs".into())
        })?;
        let node = stream.clone_dtoh(&self.node.slice(..b))?;
        let token = stream.clone_dtoh(&self.token.slice(..b))?;
        let emitted = stream.clone_dtoh(&self.num_emitted.slice(..b))?;
        let status = stream.clone_dtoh(&self.status.slice(..b))?;
        Ok((0..b)
            .map(|i| VerifiedTree {
                status: RequestStatus::from_code(status[i]),
                node: node[i].max(0) as usize,
                token: token[i].max(0) as u32,
                emitted: emitted[i].max(0) as usize,
            })
            .collect())
    }
}

impl TreeVerifier {
    /// Verifies a batch of trees on the verifier's stream, without synchronising: reads
    /// `inputs`, advances each request's entry of `offsets` by one, and writes `outputs`.
    /// Requests whose temperature is 0 walk down the target's argmaxes; the others are
    /// verified by `inputs.rule` (children drawn from draft rows) or by RRS's scalar form
    /// (deterministic children), against each model's rows as the request samples them.
    /// Problems in values on the device (malformed trees, NaN logits, tokens out of range,
    /// impossible children, bad temperatures or truncations) are reported per request.
    ///
    /// Errors, before anything is launched: buffers too short for the shapes, shapes the
    /// kernels cannot index, more requests or node slots than the verifier or the outputs hold.
    pub fn verify<T: Logit + DeviceRepr>(
        &mut self,
        inputs: &TreeInputs<'_, T>,
        offsets: &mut impl DevicePtrMut<u64>,
        outputs: &mut TreeOutputs,
    ) -> Result<()> {
        let stream = self.stream().clone();
        let (b, nodes, v) = (inputs.batch, inputs.max_nodes, inputs.vocab);
        let to_i32 = |what: &str, x: usize| {
            i32::try_from(x).map_err(|_| Error::TooLarge(format!("{what} = {x} passes i32")))
        };
        let to_i64 = |what: &str, x: usize| {
            i64::try_from(x).map_err(|_| Error::TooLarge(format!("{what} = {x} passes i64")))
        };
        let t = &inputs.target;
        let mut args = AspsTreeVerifyArgs {
            rule: AspsTreeVerifyArgs::rule_code(inputs.rule),
            dtype: crate::capi::AspsVerifyArgs::dtype_code(T::DTYPE),
            batch: to_i32("batch", b)?,
            max_nodes: to_i32("max_nodes", nodes)?,
            vocab: to_i32("vocab", v)?,
            target_batch_stride: to_i64("target.batch_stride", t.batch_stride)?,
            target_node_stride: to_i64("target.row_stride", t.row_stride)?,
            ..AspsTreeVerifyArgs::new()
        };
        if let Some(d) = &inputs.draft {
            args.draft_batch_stride = to_i64("draft.batch_stride", d.batch_stride)?;
            args.draft_node_stride = to_i64("draft.row_stride", d.row_stride)?;
        }
        if outputs.status.len() < b {
            return Err(Error::Capacity(format!(
                "outputs hold {} requests; the call has {b}",
                outputs.status.len()
            )));
        }
        need("offsets", offsets.len(), b)?;
        // The addresses first (a view's address needs no length), then the shape's checks,
        // then every length against the extent the checked shape gives.
        let (target, _g1) = t.data.device_ptr(&stream);
        let draft = inputs.draft.as_ref().map(|d| d.data.device_ptr(&stream));
        let (num_nodes, _g2) = input("num_nodes", &inputs.num_nodes, b, &stream)?;
        let (parents, _g3) = input("parents", &inputs.parents, b * nodes, &stream)?;
        let (tokens, _g4) = input("tokens", &inputs.tokens, b * nodes, &stream)?;
        let (laws, _g5) = input("sibling_laws", &inputs.sibling_laws, b, &stream)?;
        let (seeds, _g6) = input("seeds", &inputs.seeds, b, &stream)?;
        let mut guards = Vec::new();
        let sampling = sampling_args(&inputs.sampling, b, &stream, &mut guards)?;
        let (offs, _g7) = offsets.device_ptr_mut(&stream);
        let (out_node, _g8) = outputs.node.device_ptr_mut(&stream);
        let (out_token, _g9) = outputs.token.device_ptr_mut(&stream);
        let (out_emitted, _g10) = outputs.num_emitted.device_ptr_mut(&stream);
        let (out_status, _g11) = outputs.status.device_ptr_mut(&stream);
        args.target_logits = target as *const c_void;
        args.draft_logits = draft.as_ref().map_or(0, |d| d.0) as *const c_void;
        args.num_nodes = num_nodes as *const i32;
        args.parents = parents as *const i32;
        args.tokens = tokens as *const i32;
        args.sibling_laws = laws as *const i32;
        args.seeds = seeds as *const u64;
        args.offsets = offs as *mut u64;
        args.out_node = out_node as *mut i32;
        args.out_token = out_token as *mut i32;
        args.out_num_emitted = out_emitted as *mut i32;
        args.out_status = out_status as *mut i32;
        args.sampling = sampling;
        let shape = self.check(&args)?;
        let t_extent = extent(b, nodes, v, t.batch_stride, t.row_stride).expect("checked");
        need("target.data", t.data.len(), t_extent)?;
        if let Some(d) = &inputs.draft
            && shape.draft_rows > 0
        {
            let d_extent = extent(b, shape.draft_rows, v, d.batch_stride, d.row_stride);
            need("draft.data", d.data.len(), d_extent.expect("checked"))?;
        }
        // SAFETY: every pointer comes from a live cudarc buffer of this context whose length
        // was checked against the extent the kernels touch; the buffers stay borrowed (inputs
        // shared, offsets and outputs exclusively) until this call returns, and the guards
        // order later uses on other streams after the queued kernels.
        unsafe { self.launch(&args, &shape, &stream) }?;
        outputs.last = Some(b);
        Ok(())
    }
}
