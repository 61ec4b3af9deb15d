//! The kernel parameter block, mirrored field for field from `VerifyParams` in
//! kernels/verify.cuh and passed by value to every verification kernel.

use cudarc::driver::DeviceRepr;

/// The parameter block of the verification kernels. Device pointers are `u64`; strides are in
/// elements. Field order and types must match the CUDA struct exactly (all 8-byte fields
/// first, then an even number of 4-byte ones: no padding to disagree on). Public for the kernel emulator's
/// test only.
#[doc(hidden)]
#[allow(missing_docs)]
#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
pub struct VerifyParams {
    pub target: u64,
    pub target_batch_stride: i64,
    pub target_row_stride: i64,
    pub draft: u64,
    pub draft_batch_stride: i64,
    pub draft_row_stride: i64,
    pub draft_tokens: u64,
    pub draft_lens: u64,
    pub temperatures: u64,
    pub seeds: u64,
    pub offsets: u64,
    pub out_tokens: u64,
    pub out_num_emitted: u64,
    pub out_num_accepted: u64,
    pub out_status: u64,
    pub t_top_k: u64,
    pub t_top_p: u64,
    pub t_min_p: u64,
    pub d_top_k: u64,
    pub d_top_p: u64,
    pub d_min_p: u64,
    pub ws_t_pmax: u64,
    pub ws_t_psum: u64,
    pub ws_t_parg: u64,
    pub ws_t_pflags: u64,
    pub ws_d_pmax: u64,
    pub ws_d_psum: u64,
    pub ws_d_pflags: u64,
    pub ws_t_gather: u64,
    pub ws_d_gather: u64,
    pub ws_t_theta: u64,
    pub ws_t_trunc_ln: u64,
    pub ws_d_theta: u64,
    pub ws_d_trunc_ln: u64,
    pub ws_race_pkey: u64,
    pub ws_race_ptoken: u64,
    pub ws_res_part: u64,
    pub ws_arrivals: u64,
    pub batch: i32,
    pub max_draft: i32,
    pub vocab: i32,
    pub method: i32,
    pub split: i32,
    pub chunk: i32,
    pub form: i32,
    pub reserved: i32,
}

// SAFETY: a plain #[repr(C)] struct of integers, laid out like the CUDA struct it mirrors.
unsafe impl DeviceRepr for VerifyParams {}

const _: () = assert!(std::mem::size_of::<VerifyParams>() == 38 * 8 + 8 * 4);
