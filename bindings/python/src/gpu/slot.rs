//! What the GPU entry points keep between calls: per device, the context with the kernels; per
//! device and stream (and thread, for the per-thread default stream, which is another stream in
//! each thread), a slot: the parameter buffer, and a chain and a tree verifier once a call of
//! each kind was made. Every call on a stream reuses its slot, and calls on one stream are
//! ordered on the device, which is what the raw fronts' contract asks of calls on one verifier.
//!
//! A call larger than any before on its stream grows the slot (the batch capacity to the next
//! power of two). What it replaces is retired, not freed: work still queued on the stream, or a
//! CUDA graph captured from it, may use it, so it lives as long as the process, as the slots do
//! (at most as much memory again as the slot's current room, since capacities at least double).

use std::collections::btree_map::Entry;
use std::collections::{BTreeMap, HashMap};
use std::sync::{Mutex, MutexGuard};
use std::thread::ThreadId;

use asps::cuda::{Gpu, TreeVerifier, Verifier};
use pyo3::prelude::*;

use super::Common;
use super::driver::{check_placed, check_stream, cuda_error};
use super::params::Params;
use crate::crate_error;

/// A slot's key: the device, the stream handle, and the thread for the per-thread default
/// stream (handle 2, `CU_STREAM_PER_THREAD`).
type Key = (usize, usize, Option<ThreadId>);

#[derive(Default)]
pub(super) struct Cache {
    gpus: BTreeMap<usize, Gpu>,
    slots: HashMap<Key, Slot>,
}

static CACHE: Mutex<Option<Cache>> = Mutex::new(None);

/// The cache, for one call at a time (calls from several Python threads take turns).
pub(super) fn cache() -> MutexGuard<'static, Option<Cache>> {
    CACHE.lock().unwrap_or_else(|e| e.into_inner())
}

/// Device `ordinal`'s primary context (the one torch uses too) with the kernels, loaded once.
pub(super) fn gpu(cache: &mut Cache, ordinal: usize) -> PyResult<&Gpu> {
    Ok(match cache.gpus.entry(ordinal) {
        Entry::Occupied(e) => e.into_mut(),
        Entry::Vacant(e) => e.insert(Gpu::new(ordinal).map_err(crate_error)?),
    })
}

#[derive(Default)]
pub(super) struct Slot {
    pub(super) params: Option<Params>,
    pub(super) chain: Option<Verifier>,
    pub(super) tree: Option<TreeVerifier>,
    /// What growing replaced, kept alive (see the module's comment).
    retired: Vec<Retired>,
}

#[allow(dead_code)] // held, never read: their device memory must outlive queued work
enum Retired {
    Params(Params),
    Chain(Verifier),
    Tree(TreeVerifier),
}

/// The room a call needs.
pub(super) enum Need {
    Chain { batch: usize, max_draft: usize },
    Tree { batch: usize, max_nodes: usize },
}

impl Need {
    fn batch(&self) -> usize {
        match *self {
            Need::Chain { batch, .. } | Need::Tree { batch, .. } => batch,
        }
    }
}

impl Slot {
    fn fits(&self, need: &Need) -> bool {
        self.params
            .as_ref()
            .is_some_and(|p| p.capacity >= need.batch())
            && match *need {
                Need::Chain { batch, max_draft } => self
                    .chain
                    .as_ref()
                    .is_some_and(|v| v.max_batch() >= batch && v.max_draft() >= max_draft),
                Need::Tree { batch, max_nodes } => self
                    .tree
                    .as_ref()
                    .is_some_and(|v| v.max_batch() >= batch && v.max_nodes() >= max_nodes),
            }
    }

    /// Makes room for `need` and for every call the slot held before, retiring what it
    /// replaces.
    fn grow(&mut self, gpu: &Gpu, need: &Need) -> PyResult<()> {
        let own = gpu.context().default_stream();
        let room = |need: usize, had: usize| need.next_power_of_two().max(had);
        match *need {
            Need::Chain { batch, max_draft } => {
                let (b, n) = self
                    .chain
                    .as_ref()
                    .map_or((0, 0), |v| (v.max_batch(), v.max_draft()));
                let v = Verifier::new(gpu, &own, room(batch, b), max_draft.max(n))
                    .map_err(crate_error)?;
                if let Some(old) = self.chain.replace(v) {
                    self.retired.push(Retired::Chain(old));
                }
            }
            Need::Tree { batch, max_nodes } => {
                let (b, n) = self
                    .tree
                    .as_ref()
                    .map_or((0, 0), |v| (v.max_batch(), v.max_nodes()));
                let v = TreeVerifier::new(gpu, &own, room(batch, b), max_nodes.max(n))
                    .map_err(crate_error)?;
                if let Some(old) = self.tree.replace(v) {
                    self.retired.push(Retired::Tree(old));
                }
            }
        }
        let had = self.params.as_ref().map_or(0, |p| p.capacity);
        if had < need.batch() {
            gpu.context().bind_to_thread().map_err(cuda_error)?;
            let params = Params::new(room(need.batch(), had))?;
            if let Some(old) = self.params.replace(params) {
                self.retired.push(Retired::Params(old));
            }
        }
        Ok(())
    }
}

/// The slot of the call's device and stream, with room for `need`; the device's context made
/// current, and the arrays whose device the caller did not say checked to be on it.
pub(super) fn slot<'a>(
    cache: &'a mut Cache,
    common: &Common<'_>,
    need: &Need,
) -> PyResult<&'a mut Slot> {
    let gpu = gpu(cache, common.device)?.clone();
    gpu.context().bind_to_thread().map_err(cuda_error)?;
    check_stream(&gpu, common.stream)?;
    for (name, ptr) in &common.unplaced {
        check_placed(name, *ptr, common.device)?;
    }
    let thread = (common.stream == 2).then(|| std::thread::current().id());
    let slot = cache
        .slots
        .entry((common.device, common.stream, thread))
        .or_default();
    if !slot.fits(need) {
        slot.grow(&gpu, need)?;
    }
    Ok(slot)
}
