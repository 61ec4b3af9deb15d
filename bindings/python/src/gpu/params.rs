//! Per-request parameters: each comes as a device array of B values (its address) or as one
//! number for every request, which is written into a slot's own array with the driver's 32-bit
//! memsets, queued on the call's stream before the kernels (no copy from the host, no wait).

use asps::capi::{AspsSampling, AspsTruncation};
use cudarc::driver::sys;
use pyo3::prelude::*;
use pyo3::types::PyTuple;

use super::Common;
use super::driver::{cuda_error, fill32, fill64};
use crate::value_error;

/// One per-request parameter: `("array", address)` of a device array of B values, or
/// `("value", x)` for every request.
pub(super) enum Param<'py> {
    Array(u64),
    Value(Bound<'py, PyAny>),
}

impl<'py> FromPyObject<'py> for Param<'py> {
    fn extract_bound(ob: &Bound<'py, PyAny>) -> PyResult<Self> {
        let tuple = ob.downcast::<PyTuple>()?;
        let (tag, value): (String, Bound<'py, PyAny>) = tuple.extract()?;
        match tag.as_str() {
            "array" => Ok(Param::Array(value.extract()?)),
            "value" => Ok(Param::Value(value)),
            _ => Err(value_error(format!("a parameter tagged {tag:?}"))),
        }
    }
}

/// The 4-byte arrays of a parameter buffer, after its two 8-byte ones (0 seeds, 1 offsets):
/// 0 draft lengths or node counts, 1 temperatures, 2 draft temperatures, 3-5 the target's
/// top-k, top-p, min-p, 6-8 the draft's, 9 sibling laws.
const WORD_ARRAYS: usize = 10;

/// Room on the device for `capacity` values of every per-request parameter.
pub(super) struct Params {
    base: u64,
    pub(super) capacity: usize,
}

impl Params {
    /// Allocates in the current context.
    pub(super) fn new(capacity: usize) -> PyResult<Params> {
        let bytes = capacity
            .checked_mul(16 + 4 * WORD_ARRAYS)
            .ok_or_else(|| value_error(format!("a batch of {capacity} requests")))?;
        // SAFETY: a plain allocation in the current context, freed once, in Drop.
        let base = unsafe { cudarc::driver::result::malloc_sync(bytes) }.map_err(cuda_error)?;
        Ok(Params { base, capacity })
    }

    fn wide(&self, i: usize) -> u64 {
        self.base + (i * 8 * self.capacity) as u64
    }

    fn word(&self, i: usize) -> u64 {
        self.base + (16 * self.capacity + i * 4 * self.capacity) as u64
    }
}

impl Drop for Params {
    fn drop(&mut self) {
        // SAFETY: allocated in Params::new. Never reached while work may use it: slots and
        // what they retire live for the whole process (slot.rs).
        let _ = unsafe { cudarc::driver::result::free_sync(self.base) };
    }
}

/// A parameter's value, to write into a slot array before the kernels.
enum Fill {
    Word(u64, u32),
    Wide(u64, u64),
}

/// Gives each per-request parameter of a call its device address: the caller's array, or a
/// slot array that [`Writer::queue`] fills with the parameter's value once the call is checked.
pub(super) struct Writer<'a> {
    params: &'a Params,
    fills: Vec<Fill>,
}

impl<'a> Writer<'a> {
    pub(super) fn new(params: &'a Params) -> Self {
        Writer {
            params,
            fills: Vec::new(),
        }
    }

    /// A 4-byte parameter of the slot's array `array`, its value encoded by `bits`; 0 (NULL,
    /// the option off) for `None`.
    pub(super) fn word<T: for<'b> FromPyObject<'b>>(
        &mut self,
        param: Option<&Param<'_>>,
        array: usize,
        bits: impl Fn(T) -> u32,
    ) -> PyResult<u64> {
        Ok(match param {
            None => 0,
            Some(Param::Array(ptr)) => *ptr,
            Some(Param::Value(v)) => {
                let dst = self.params.word(array);
                self.fills.push(Fill::Word(dst, bits(v.extract()?)));
                dst
            }
        })
    }

    /// An 8-byte parameter of the slot's 8-byte array `array`.
    pub(super) fn wide(&mut self, param: &Param<'_>, array: usize) -> PyResult<u64> {
        Ok(match param {
            Param::Array(ptr) => *ptr,
            Param::Value(v) => {
                let dst = self.params.wide(array);
                self.fills.push(Fill::Wide(dst, v.extract()?));
                dst
            }
        })
    }

    fn truncation(
        &mut self,
        first: usize,
        (k, p, m): (Option<&Param<'_>>, Option<&Param<'_>>, Option<&Param<'_>>),
    ) -> PyResult<AspsTruncation> {
        Ok(AspsTruncation {
            top_k: self.word(k, first, |k: i32| k as u32)? as *const i32,
            top_p: self.word(p, first + 1, f32::to_bits)? as *const f32,
            min_p: self.word(m, first + 2, f32::to_bits)? as *const f32,
        })
    }

    /// The call's sampling (arrays 1 to 8).
    pub(super) fn sampling(&mut self, c: &Common<'_>) -> PyResult<AspsSampling> {
        let target = (c.top_k.as_ref(), c.top_p.as_ref(), c.min_p.as_ref());
        let draft = (
            c.draft_top_k.as_ref(),
            c.draft_top_p.as_ref(),
            c.draft_min_p.as_ref(),
        );
        Ok(AspsSampling {
            temperature: self.word(Some(&c.temperature), 1, f32::to_bits)? as *const f32,
            target: self.truncation(3, target)?,
            draft: self.truncation(6, draft)?,
            draft_temperature: self.word(c.draft_temperature.as_ref(), 2, f32::to_bits)?
                as *const f32,
        })
    }

    /// Queues the fills, `batch` values each, on `stream`.
    pub(super) fn queue(self, batch: usize, stream: sys::CUstream) -> PyResult<()> {
        for fill in self.fills {
            match fill {
                Fill::Word(dst, bits) => fill32(dst, bits, batch, stream)?,
                Fill::Wide(dst, value) => fill64(dst, value, batch, stream)?,
            }
        }
        Ok(())
    }
}
