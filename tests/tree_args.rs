//! Host-side checks of a tree call's one description, `AspsTreeVerifyArgs`: every bad shape,
//! stride, pointer, overlap, code or struct size is a clear error before anything is launched,
//! through the Rust raw front's check and the C ABI alike. These run without a GPU (fake device
//! addresses, never dereferenced).

use std::ffi::c_void;
use std::mem::size_of;

use asps::capi::bindings::*;
use asps::capi::{TREE_VERIFY_ARGS_MIN_SIZE, asps_tree_verify};
use asps::cuda::{MAX_VOCAB, TREE_MAX_NODES};
use asps::reference::TreeRule;
use asps::{Dtype, Error};

#[path = "common/header_fields.rs"]
mod header_fields;
use header_fields::pointer_fields;

const AT: fn(u64) -> usize = |k| (k << 40) as usize;

/// A valid call at fake device addresses, each array 2^40 bytes from the next.
fn good() -> AspsTreeVerifyArgs {
    let (b, nodes, v) = (4i64, 32i64, 32000i64);
    AspsTreeVerifyArgs {
        rule: AspsTreeVerifyArgs::rule_code(TreeRule::Tv),
        dtype: AspsVerifyArgs::dtype_code(Dtype::BF16),
        batch: b as i32,
        max_nodes: nodes as i32,
        vocab: v as i32,
        target_logits: AT(1) as *const c_void,
        target_batch_stride: nodes * v,
        target_node_stride: v,
        draft_logits: AT(2) as *const c_void,
        draft_batch_stride: (nodes - 1) * v,
        draft_node_stride: v,
        num_nodes: AT(3) as *const i32,
        parents: AT(4) as *const i32,
        tokens: AT(5) as *const i32,
        sibling_laws: AT(6) as *const i32,
        seeds: AT(7) as *const u64,
        offsets: AT(8) as *mut u64,
        out_node: AT(9) as *mut i32,
        out_token: AT(10) as *mut i32,
        out_num_emitted: AT(11) as *mut i32,
        out_status: AT(12) as *mut i32,
        sampling: AspsSampling {
            temperature: AT(13) as *const f32,
            ..AspsSampling::default()
        },
        ..AspsTreeVerifyArgs::new()
    }
}

fn err(f: impl FnOnce(&mut AspsTreeVerifyArgs)) -> Error {
    let mut a = good();
    f(&mut a);
    a.check().unwrap_err()
}

#[test]
fn good_arguments_pass() {
    let shape = good().check().unwrap();
    assert_eq!(
        (
            shape.rule,
            shape.dtype,
            shape.batch,
            shape.max_nodes,
            shape.vocab
        ),
        (TreeRule::Tv, Dtype::BF16, 4, 32, 32000)
    );
    assert_eq!(shape.draft_rows, 31);
    assert!(!shape.truncates);
    // Without draft logits (deterministic trees), their strides are not read.
    let mut a = good();
    a.draft_logits = std::ptr::null();
    a.draft_node_stride = -1;
    assert_eq!(a.check().unwrap().draft_rows, 0);
    // One node slot: no draft row can be read.
    let mut a = good();
    a.max_nodes = 1;
    a.target_batch_stride = 32000;
    assert_eq!(a.check().unwrap().draft_rows, 0);
    let mut a = good();
    a.rule = AspsTreeVerifyArgs::rule_code(TreeRule::Rrs);
    a.sampling.target.top_p = AT(14) as *const f32;
    let shape = a.check().unwrap();
    assert_eq!(shape.rule, TreeRule::Rrs);
    assert!(shape.truncates);
}

#[test]
fn bad_shapes_codes_and_sizes() {
    assert!(matches!(err(|a| a.batch = 0), Error::Shape(_)));
    assert!(matches!(err(|a| a.batch = -3), Error::Shape(_)));
    assert!(matches!(err(|a| a.max_nodes = 0), Error::Shape(_)));
    assert!(matches!(
        err(|a| a.max_nodes = TREE_MAX_NODES as i32 + 1),
        Error::TooLarge(_)
    ));
    assert!(matches!(err(|a| a.vocab = 0), Error::Shape(_)));
    assert!(matches!(
        err(|a| a.vocab = MAX_VOCAB as i32 + 1),
        Error::TooLarge(_)
    ));
    assert!(matches!(err(|a| a.rule = 2), Error::InvalidArgument(_)));
    assert!(matches!(err(|a| a.dtype = 3), Error::InvalidArgument(_)));
    assert!(matches!(
        err(|a| a.struct_size -= 8),
        Error::InvalidArgument(_)
    ));
    // Strides: below V, negative, or spanning more than 2^63 elements.
    assert!(matches!(
        err(|a| a.target_node_stride = 31999),
        Error::Shape(_)
    ));
    assert!(matches!(
        err(|a| a.draft_node_stride = 31999),
        Error::Shape(_)
    ));
    assert!(matches!(
        err(|a| a.draft_batch_stride = -1),
        Error::Shape(_)
    ));
    assert!(matches!(
        err(|a| a.target_batch_stride = i64::MAX),
        Error::TooLarge(_)
    ));
    // So many requests that the row launch's grid passes 2^31 blocks.
    assert!(matches!(
        err(|a| {
            a.batch = i32::MAX;
            a.target_batch_stride = 0;
            a.draft_batch_stride = 0;
        }),
        Error::TooLarge(_)
    ));
}

#[test]
fn null_misaligned_and_overlapping_arrays() {
    assert_eq!(
        err(|a| a.parents = std::ptr::null()),
        Error::NullPointer("parents")
    );
    assert_eq!(
        err(|a| a.sampling.temperature = std::ptr::null()),
        Error::NullPointer("sampling.temperature")
    );
    assert_eq!(
        err(|a| a.out_token = std::ptr::null_mut()),
        Error::NullPointer("out_token")
    );
    assert_eq!(
        err(|a| a.seeds = (AT(7) + 4) as *const u64),
        Error::Misaligned {
            what: "seeds",
            align: 8
        }
    );
    assert_eq!(
        err(|a| a.target_logits = (AT(1) + 1) as *const c_void),
        Error::Misaligned {
            what: "target_logits",
            align: 2
        }
    );
    assert_eq!(
        err(|a| a.draft_logits = (AT(2) + 1) as *const c_void),
        Error::Misaligned {
            what: "draft_logits",
            align: 2
        }
    );
    // An output over the last parent entry: parents span 4 B max_nodes bytes.
    assert_eq!(
        err(|a| a.out_node = (AT(4) + 4 * 4 * 32 - 4) as *mut i32),
        Error::Overlap {
            written: "out_node",
            other: "parents"
        }
    );
    // Just past it is fine.
    let mut a = good();
    a.out_node = (AT(4) + 4 * 4 * 32) as *mut i32;
    a.check().unwrap();
    // Draft rows end before node max_nodes - 1: an output right after them is fine, one over
    // their last element is not.
    let draft_bytes = 2 * (3 * 31 * 32000 + 30 * 32000 + 32000);
    let mut a = good();
    a.out_status = (AT(2) + draft_bytes) as *mut i32;
    a.check().unwrap();
    a.out_status = (AT(2) + draft_bytes - 4) as *mut i32;
    assert_eq!(
        a.check().unwrap_err(),
        Error::Overlap {
            written: "out_status",
            other: "draft_logits"
        }
    );
    // Arrays passing the end of the address space.
    assert!(matches!(
        err(|a| a.tokens = (u64::MAX - 8) as *const i32),
        Error::TooLarge(_)
    ));
}

/// What `asps_tree_verify` returns for `args` given as `size` bytes (its `struct_size`), with no
/// verifier: its checks run first, so an ASPS_ERR_INVALID_ARGUMENT for the null handle means the
/// struct passed them.
fn c_call(args: &AspsTreeVerifyArgs, size: usize, tail: u8) -> i32 {
    let whole = size_of::<AspsTreeVerifyArgs>();
    let mut words = vec![0u64; size.max(whole).div_ceil(8) + 1];
    let bytes = words.as_mut_ptr().cast::<u8>();
    // SAFETY: `words` holds at least max(size, whole) bytes, 8-aligned.
    unsafe {
        std::ptr::copy_nonoverlapping(
            (args as *const AspsTreeVerifyArgs).cast::<u8>(),
            bytes,
            whole,
        );
        if size > whole {
            *bytes.add(size - 1) = tail;
        }
        bytes.cast::<u32>().write(size as u32);
        asps_tree_verify(std::ptr::null_mut(), bytes.cast(), std::ptr::null_mut())
    }
}

#[test]
fn the_c_abi_reads_structs_of_every_header_size() {
    let whole = size_of::<AspsTreeVerifyArgs>();
    let mut bad = good();
    bad.batch = 0;
    let (shape, refused) = (ASPS_ERR_SHAPE as i32, ASPS_ERR_INVALID_ARGUMENT as i32);
    for size in [TREE_VERIFY_ARGS_MIN_SIZE, whole, whole + 8, 4096] {
        assert_eq!(c_call(&bad, size, 0), shape, "struct_size = {size}");
    }
    for size in [0, 4, TREE_VERIFY_ARGS_MIN_SIZE - 8, whole - 4, 4104] {
        assert_eq!(c_call(&bad, size, 0), refused, "struct_size = {size}");
    }
    // A newer struct setting a field this library does not know.
    assert_eq!(c_call(&good(), whole + 8, 1), refused);
    // A good struct passes its checks (the null handle is what is left), at every size; a
    // shorter one leaves its later options off, so a misaligned truncation array past it is
    // not read.
    assert_eq!(c_call(&good(), whole, 0), refused);
    let mut a = good();
    a.sampling.draft.min_p = (AT(14) + 1) as *const f32;
    assert_eq!(c_call(&a, whole, 0), ASPS_ERR_MISALIGNED as i32);
    assert_eq!(c_call(&a, TREE_VERIFY_ARGS_MIN_SIZE, 0), refused);
    // A null struct.
    // SAFETY: null is allowed and refused.
    let rc =
        unsafe { asps_tree_verify(std::ptr::null_mut(), std::ptr::null(), std::ptr::null_mut()) };
    assert_eq!(rc, refused);
}

/// Every pointer of the tree call's description is in the host check's list: an odd address in
/// any of them is refused, naming that field. A field added to include/asps.h but not to
/// src/cuda/tree/args.rs's list fails here.
#[test]
fn every_pointer_field_of_the_tree_header_is_checked() {
    let fields = pointer_fields("AspsTreeVerifyArgs");
    assert!(fields.len() >= 20, "{fields:?}");
    assert!(fields.iter().any(|(f, _)| f == "sampling.draft.min_p"));
    for (path, at) in fields {
        let mut a = good();
        // SAFETY: `at` is the offset of a pointer field of the repr(C) struct (bindgen's
        // layout); writing an address there is writing that field.
        unsafe {
            let field = (&raw mut a).cast::<u8>().add(at).cast::<usize>();
            let addr = match field.read() {
                0 => AT(14), // an optional array, off in good()
                addr => addr,
            };
            field.write(addr + 1);
        }
        match a.check() {
            Err(Error::Misaligned { what, .. }) => assert_eq!(what, path),
            other => panic!("an odd address in `{path}`: {other:?}"),
        }
    }
}
