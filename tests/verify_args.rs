//! Host-side checks of a verification call's one description, `AspsVerifyArgs`: every bad shape,
//! stride, pointer, overlap, enum or struct size is a clear error before anything is launched,
//! the same through the Rust raw front's check and the C ABI. These run without a GPU (fake
//! device addresses, never dereferenced).

use std::ffi::c_void;
use std::mem::{offset_of, size_of};

use asps::capi::bindings::*;
use asps::capi::{VERIFY_ARGS_MAX_SIZE, VERIFY_ARGS_MIN_SIZE, asps_verify, status_of};
use asps::cuda::MAX_VOCAB;
use asps::{Dtype, Error, Method};

#[path = "common/header_fields.rs"]
mod header_fields;
use header_fields::pointer_fields;

/// A valid call at fake device addresses, each array 2^40 bytes from the next (room for any
/// shape the tests try).
fn good() -> AspsVerifyArgs {
    let (b, n, v) = (4i64, 8i64, 32000i64);
    let at = |k: u64| (k << 40) as usize;
    AspsVerifyArgs {
        method: AspsVerifyArgs::method_code(Method::Asps),
        dtype: AspsVerifyArgs::dtype_code(Dtype::BF16),
        batch: b as i32,
        max_draft: n as i32,
        vocab: v as i32,
        target_logits: at(1) as *const c_void,
        target_batch_stride: (n + 1) * v,
        target_row_stride: v,
        draft_logits: at(2) as *const c_void,
        draft_batch_stride: n * v,
        draft_row_stride: v,
        draft_tokens: at(3) as *const i32,
        draft_lens: at(4) as *const i32,
        seeds: at(5) as *const u64,
        offsets: at(6) as *mut u64,
        out_tokens: at(7) as *mut i32,
        out_num_emitted: at(8) as *mut i32,
        out_num_accepted: at(9) as *mut i32,
        out_status: at(10) as *mut i32,
        sampling: AspsSampling {
            temperature: at(11) as *const f32,
            ..AspsSampling::default()
        },
        ..AspsVerifyArgs::new()
    }
}

fn err(f: impl FnOnce(&mut AspsVerifyArgs)) -> Error {
    let mut a = good();
    f(&mut a);
    a.check().unwrap_err()
}

/// An address `bytes` past `p`.
fn plus<T>(p: *const T, bytes: usize) -> *const T {
    (p as usize + bytes) as *const T
}

fn plus_mut<T>(p: *mut T, bytes: usize) -> *mut T {
    (p as usize + bytes) as *mut T
}

#[test]
fn good_arguments_pass() {
    let shape = good().check().unwrap();
    assert_eq!(
        (
            shape.method,
            shape.dtype,
            shape.batch,
            shape.max_draft,
            shape.vocab
        ),
        (Method::Asps, Dtype::BF16, 4, 8, 32000)
    );
    assert!(!shape.truncates);
    // Padded rows and a layout with the request index innermost are both fine.
    let mut a = good();
    a.target_row_stride = 32064;
    a.target_batch_stride = 32064 * 9;
    a.draft_batch_stride = 32000;
    a.draft_row_stride = 4 * 32000;
    a.check().unwrap();
    // Any truncation array makes the call truncate.
    let mut a = good();
    a.sampling.draft.min_p = (12usize << 40) as *const f32;
    assert!(a.check().unwrap().truncates);
}

#[test]
fn empty_and_negative_shapes() {
    assert!(matches!(err(|a| a.batch = 0), Error::Shape(_)));
    assert_eq!(err(|a| a.max_draft = 0), Error::EmptyDraft);
    assert!(matches!(err(|a| a.vocab = 0), Error::Shape(_)));
    assert!(matches!(err(|a| a.batch = -1), Error::Shape(_)));
    assert!(matches!(err(|a| a.vocab = i32::MIN), Error::Shape(_)));
    assert!(matches!(err(|a| a.target_row_stride = -5), Error::Shape(_)));
    assert!(matches!(
        err(|a| a.draft_batch_stride = i64::MIN),
        Error::Shape(_)
    ));
}

#[test]
fn unknown_codes_and_struct_sizes() {
    assert!(matches!(err(|a| a.method = 3), Error::InvalidArgument(_)));
    assert!(matches!(err(|a| a.dtype = -1), Error::InvalidArgument(_)));
    // The Rust front takes whole structs only; shorter ones come through the C ABI.
    assert!(matches!(
        err(|a| a.struct_size = 0),
        Error::InvalidArgument(_)
    ));
    assert!(matches!(
        err(|a| a.struct_size += 8),
        Error::InvalidArgument(_)
    ));
    assert_eq!(
        AspsVerifyArgs::default().struct_size as usize,
        size_of::<AspsVerifyArgs>()
    );
}

#[test]
fn strides_shorter_than_a_row() {
    assert!(matches!(
        err(|a| a.target_row_stride = 31999),
        Error::Shape(_)
    ));
    assert!(matches!(err(|a| a.draft_row_stride = 1), Error::Shape(_)));
}

#[test]
fn index_overflow_past_what_the_kernels_address() {
    assert!(matches!(err(|a| a.vocab = i32::MAX), Error::TooLarge(_)));
    // B * (2n + 1) blocks past 2^31.
    assert!(matches!(
        err(|a| {
            a.batch = 1 << 27;
            a.max_draft = 16
        }),
        Error::TooLarge(_)
    ));
    assert!(matches!(err(|a| a.max_draft = 1 << 24), Error::TooLarge(_)));
    assert!(matches!(
        err(|a| a.target_batch_stride = i64::MAX / 2),
        Error::TooLarge(_)
    ));
    // An array that would pass the end of the address space.
    assert!(matches!(
        err(|a| a.out_tokens = (u64::MAX - 64) as *mut i32),
        Error::TooLarge(_)
    ));
    // More than 2^31 elements is fine: indices are 64-bit.
    let mut a = good();
    a.batch = 4096;
    a.vocab = 151_936;
    a.target_row_stride = 151_936;
    a.target_batch_stride = 9 * 151_936;
    a.draft_row_stride = 151_936;
    a.draft_batch_stride = 8 * 151_936;
    let elements = i64::from(a.batch) * a.target_batch_stride;
    assert!(elements > 1 << 31);
    a.check().unwrap();
}

/// `good()` with a vocabulary of `v` (strides follow).
fn with_vocab(v: usize) -> AspsVerifyArgs {
    let mut a = good();
    let (v, n) = (v as i64, i64::from(a.max_draft));
    a.vocab = v as i32;
    a.target_row_stride = v;
    a.target_batch_stride = (n + 1) * v;
    a.draft_row_stride = v;
    a.draft_batch_stride = n * v;
    a
}

#[test]
fn vocabulary_is_capped_where_the_kernels_row_loops_cannot_wrap() {
    // The kernels step `int v` by blockDim.x past V; V <= 2^30 keeps that below 2^31.
    assert_eq!(MAX_VOCAB, 1 << 30);
    with_vocab(MAX_VOCAB).check().unwrap();
    let e = with_vocab(MAX_VOCAB + 1).check().unwrap_err();
    let Error::TooLarge(msg) = &e else {
        panic!("V = MAX_VOCAB + 1 gave {e:?}")
    };
    assert!(
        msg.contains("V = 1073741825") && msg.contains("1073741824"),
        "{msg}"
    );
    // The C header's limit is the same one.
    assert_eq!(ASPS_MAX_VOCAB as usize, MAX_VOCAB);
}

#[test]
fn null_and_misaligned_pointers() {
    assert_eq!(
        err(|a| a.draft_logits = std::ptr::null()),
        Error::NullPointer("draft_logits")
    );
    assert_eq!(
        err(|a| a.out_status = std::ptr::null_mut()),
        Error::NullPointer("out_status")
    );
    assert_eq!(
        err(|a| a.sampling.temperature = std::ptr::null()),
        Error::NullPointer("sampling.temperature")
    );
    assert_eq!(
        err(|a| a.target_logits = plus(a.target_logits, 1)),
        Error::Misaligned {
            what: "target_logits",
            align: 2
        }
    );
    assert_eq!(
        err(|a| a.seeds = plus(a.seeds, 4)),
        Error::Misaligned {
            what: "seeds",
            align: 8
        }
    );
    assert_eq!(
        err(|a| a.draft_tokens = plus(a.draft_tokens, 2)),
        Error::Misaligned {
            what: "draft_tokens",
            align: 4
        }
    );
    // f32 logits need 4-byte alignment, bf16 only 2.
    assert_eq!(
        err(|a| {
            a.dtype = AspsVerifyArgs::dtype_code(Dtype::F32);
            a.draft_logits = plus(a.draft_logits, 2)
        }),
        Error::Misaligned {
            what: "draft_logits",
            align: 4
        }
    );
    // Optional arrays may be null, never misaligned.
    assert_eq!(
        err(|a| a.sampling.draft_temperature = ((12usize << 40) + 2) as *const f32),
        Error::Misaligned {
            what: "sampling.draft_temperature",
            align: 4
        }
    );
    assert_eq!(
        err(|a| a.sampling.target.top_k = ((12usize << 40) + 1) as *const i32),
        Error::Misaligned {
            what: "sampling.target.top_k",
            align: 4
        }
    );
}

#[test]
fn written_arrays_overlap_nothing() {
    // Two outputs at one address.
    assert_eq!(
        err(|a| a.out_num_accepted = a.out_num_emitted),
        Error::Overlap {
            written: "out_num_emitted",
            other: "out_num_accepted"
        }
    );
    // An output's last entry on an input's first: out_tokens holds B (n + 1) = 36 i32.
    assert!(matches!(
        err(|a| a.out_tokens = (a.draft_tokens as usize - 35 * 4) as *mut i32),
        Error::Overlap {
            written: "out_tokens",
            ..
        }
    ));
    // ... and one entry further off is fine.
    let mut a = good();
    a.out_tokens = (a.draft_tokens as usize - 36 * 4) as *mut i32;
    a.check().unwrap();
    // The offsets (read and written) inside the target's logits, or an optional array.
    assert!(matches!(
        err(|a| a.offsets = plus_mut(a.target_logits as *mut u64, 4096)),
        Error::Overlap { .. }
    ));
    assert!(matches!(
        err(|a| a.sampling.draft.top_p = plus(a.out_status as *const f32, 4)),
        Error::Overlap { .. }
    ));
    // Inputs may share memory: one buffer for both models' logits.
    let mut a = good();
    a.draft_logits = a.target_logits;
    a.sampling.draft_temperature = a.sampling.temperature;
    a.check().unwrap();
}

/// `asps_verify` with no verifier: the host checks run first, so a status other than
/// ASPS_ERR_INVALID_ARGUMENT (the null handle) means they refused the arguments.
fn c_verify_without_a_device(args: *const AspsVerifyArgs) -> i32 {
    // SAFETY: null or a valid argument struct of struct_size readable bytes (fake device
    // addresses, never dereferenced: the null handle stops the call before any launch); null
    // stream.
    unsafe { asps_verify(std::ptr::null_mut(), args, std::ptr::null_mut()) }
}

#[test]
fn c_abi_checks_as_the_raw_front() {
    let status = |f: &dyn Fn(&mut AspsVerifyArgs)| {
        let mut a = good();
        f(&mut a);
        c_verify_without_a_device(&a)
    };
    let invalid = ASPS_ERR_INVALID_ARGUMENT as i32;
    assert_eq!(status(&|_| {}), invalid, "the null handle");
    assert_eq!(c_verify_without_a_device(std::ptr::null()), invalid);
    assert_eq!(status(&|a| a.batch = 0), ASPS_ERR_SHAPE as i32);
    assert_eq!(status(&|a| a.vocab = -1), ASPS_ERR_SHAPE as i32);
    assert_eq!(status(&|a| a.dtype = 3), invalid);
    assert_eq!(
        status(&|a| a.seeds = std::ptr::null()),
        ASPS_ERR_NULL_POINTER as i32
    );
    assert_eq!(
        status(&|a| a.seeds = plus(a.seeds, 4)),
        ASPS_ERR_MISALIGNED as i32
    );
    assert_eq!(
        status(&|a| a.out_status = a.out_tokens),
        ASPS_ERR_OVERLAP as i32
    );
    let capped = |v: usize| c_verify_without_a_device(&with_vocab(v));
    assert_eq!(capped(MAX_VOCAB), invalid);
    assert_eq!(capped(MAX_VOCAB + 1), ASPS_ERR_TOO_LARGE as i32);
    assert_eq!(capped(i32::MAX as usize), ASPS_ERR_TOO_LARGE as i32);
}

/// The C ABI reads `struct_size` bytes: an older header's shorter struct has its missing fields
/// off; a struct size that is not a multiple of 8 from ASPS_VERIFY_ARGS_MIN_SIZE to
/// ASPS_VERIFY_ARGS_MAX_SIZE is refused unread; a newer, longer struct is accepted when what
/// this library does not know is zero. (tests/c/verify_smoke.c does the same from C, with the
/// older struct ending where readable memory does.)
#[test]
fn c_abi_reads_older_and_newer_structs() {
    assert_eq!(
        VERIFY_ARGS_MIN_SIZE,
        offset_of!(AspsVerifyArgs, sampling) + size_of::<*const f32>()
    );
    assert_eq!(ASPS_VERIFY_ARGS_MAX_SIZE as usize, VERIFY_ARGS_MAX_SIZE);
    let (old, whole) = (
        offset_of!(AspsVerifyArgs, sampling) + offset_of!(AspsSampling, draft_temperature),
        size_of::<AspsVerifyArgs>(),
    );
    // `a`'s first `size` bytes (all of it, then zeros, when `size` is larger), announced as a
    // struct of `size` bytes; `tail` is written into its last byte past `a`.
    let call = |a: &AspsVerifyArgs, size: usize, tail: u8| -> i32 {
        let mut words = vec![0u64; size.max(whole).div_ceil(8)];
        let bytes = words.as_mut_ptr().cast::<u8>();
        // SAFETY: `words` holds max(size, whole) bytes; an AspsVerifyArgs is plain old data.
        unsafe {
            std::ptr::copy_nonoverlapping((&raw const *a).cast::<u8>(), bytes, size.min(whole));
            if size > whole {
                *bytes.add(size - 1) = tail;
            }
            bytes.cast::<u32>().write(size as u32);
        }
        c_verify_without_a_device(words.as_ptr().cast())
    };
    // A call whose checks fail on a field every size carries: a shape error means the struct
    // was read and checked.
    let mut bad_batch = good();
    bad_batch.batch = 0;
    let shape = ASPS_ERR_SHAPE as i32;
    let refused = ASPS_ERR_INVALID_ARGUMENT as i32;
    for size in [
        VERIFY_ARGS_MIN_SIZE,
        old,
        whole,
        whole + 8,
        VERIFY_ARGS_MAX_SIZE,
    ] {
        assert_eq!(call(&bad_batch, size, 0), shape, "struct_size = {size}");
    }
    // Sizes no header has are refused unread.
    for size in [
        0,
        4,
        VERIFY_ARGS_MIN_SIZE - 8,
        old + 4,
        whole - 3,
        VERIFY_ARGS_MAX_SIZE + 8,
    ] {
        assert_eq!(call(&bad_batch, size, 0), refused, "struct_size = {size}");
    }
    // A newer struct that sets a field this library does not know is refused.
    assert_eq!(call(&bad_batch, whole + 8, 1), refused);
    // A misaligned draft temperature is refused when the struct carries it, and not read when
    // it lies past an older struct's end: its checks pass, and only the null handle is left.
    let mut a = good();
    a.sampling.draft_temperature = ((12usize << 40) + 1) as *const f32;
    assert_eq!(call(&a, whole, 0), ASPS_ERR_MISALIGNED as i32);
    assert_eq!(call(&a, old, 0), refused, "the null handle");
    // A misaligned struct is refused unread.
    let mut words = vec![0u64; whole / 8 + 1];
    let misaligned = words.as_mut_ptr().cast::<u8>().wrapping_add(4);
    assert_eq!(c_verify_without_a_device(misaligned.cast()), refused);
}

#[test]
fn errors_map_to_status_codes() {
    let pairs = [
        (Error::NullPointer("x"), ASPS_ERR_NULL_POINTER),
        (
            Error::Misaligned {
                what: "x",
                align: 8,
            },
            ASPS_ERR_MISALIGNED,
        ),
        (
            Error::Overlap {
                written: "x",
                other: "y",
            },
            ASPS_ERR_OVERLAP,
        ),
        (Error::KernelsMissing, ASPS_ERR_KERNELS_MISSING),
        (Error::NoCudaDriver(String::new()), ASPS_ERR_NO_DRIVER),
        (Error::Shape(String::new()), ASPS_ERR_SHAPE),
        (Error::TooLarge(String::new()), ASPS_ERR_TOO_LARGE),
        (Error::Capacity(String::new()), ASPS_ERR_CAPACITY),
        (
            Error::InvalidArgument(String::new()),
            ASPS_ERR_INVALID_ARGUMENT,
        ),
    ];
    for (error, code) in pairs {
        assert_eq!(status_of(&error), code as i32, "{error:?}");
    }
}

#[test]
fn request_status_codes_match_the_header() {
    use asps::cuda::RequestStatus;
    let pairs = [
        (ASPS_REQUEST_OK, RequestStatus::Ok),
        (ASPS_REQUEST_NAN, RequestStatus::NaN),
        (ASPS_REQUEST_POS_INF, RequestStatus::PosInf),
        (ASPS_REQUEST_ALL_MASKED, RequestStatus::AllMasked),
        (
            ASPS_REQUEST_TOKEN_OUT_OF_RANGE,
            RequestStatus::TokenOutOfRange,
        ),
        (
            ASPS_REQUEST_IMPOSSIBLE_DRAFT_TOKEN,
            RequestStatus::ImpossibleDraftToken,
        ),
        (ASPS_REQUEST_BAD_DRAFT_LEN, RequestStatus::BadDraftLen),
        (ASPS_REQUEST_BAD_TEMPERATURE, RequestStatus::BadTemperature),
        (ASPS_REQUEST_NO_OUTCOME, RequestStatus::NoOutcome),
        (ASPS_REQUEST_BAD_TRUNCATION, RequestStatus::BadTruncation),
        (ASPS_REQUEST_BAD_TREE, RequestStatus::BadTree),
    ];
    for (code, status) in pairs {
        assert_eq!(RequestStatus::from_code(code as i32), status);
    }
    assert_eq!(RequestStatus::from_code(99), RequestStatus::Unknown(99));
}

/// Every pointer of the call's description is in the host check's list: an odd address in any
/// of them is refused, naming that field. A field added to include/asps.h but not to
/// src/cuda/verify/args.rs's list fails here.
#[test]
fn every_pointer_field_of_the_header_is_checked() {
    let fields = pointer_fields("AspsVerifyArgs");
    assert!(fields.len() >= 17, "{fields:?}");
    assert!(fields.iter().any(|(f, _)| f == "sampling.draft.min_p"));
    for (path, at) in fields {
        let mut a = good();
        // SAFETY: `at` is the offset of a pointer field of the repr(C) struct (bindgen's
        // layout); writing an address there is writing that field.
        unsafe {
            let field = (&raw mut a).cast::<u8>().add(at).cast::<usize>();
            let addr = match field.read() {
                0 => 12usize << 40, // an optional array, off in good()
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
