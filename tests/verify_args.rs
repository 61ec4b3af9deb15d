//! Host-side checks of a verification call: every bad shape, stride, pointer or enum is a
//! clear error before anything is launched. These run without a GPU (fake device addresses,
//! never dereferenced).

use asps::capi::bindings::*;
use asps::capi::{asps_verify, raw_args, status_of};
use asps::cuda::{MAX_VOCAB, RawVerifyArgs};
use asps::{Dtype, Error, Method};

fn good() -> RawVerifyArgs {
    let (b, n, v) = (4, 8, 32000);
    RawVerifyArgs {
        method: Method::Asps,
        dtype: Dtype::BF16,
        batch: b,
        max_draft: n,
        vocab: v,
        target: 0x1000_0000,
        target_batch_stride: (n + 1) * v,
        target_row_stride: v,
        draft: 0x2000_0000,
        draft_batch_stride: n * v,
        draft_row_stride: v,
        draft_tokens: 0x3000_0000,
        draft_lens: 0x3000_1000,
        temperatures: 0x3000_2000,
        seeds: 0x3000_3000,
        offsets: 0x3000_4000,
        out_tokens: 0x3000_5000,
        out_num_emitted: 0x3000_6000,
        out_num_accepted: 0x3000_7000,
        out_status: 0x3000_8000,
    }
}

fn err(f: impl FnOnce(&mut RawVerifyArgs)) -> Error {
    let mut a = good();
    f(&mut a);
    a.check().unwrap_err()
}

#[test]
fn good_arguments_pass() {
    good().check().unwrap();
    // Padded rows and a layout with the request index innermost are both fine.
    let mut a = good();
    a.target_row_stride = 32064;
    a.target_batch_stride = 32064 * 9;
    a.draft_batch_stride = 32000;
    a.draft_row_stride = 4 * 32000;
    a.check().unwrap();
}

#[test]
fn empty_shapes() {
    assert!(matches!(err(|a| a.batch = 0), Error::Shape(_)));
    assert_eq!(err(|a| a.max_draft = 0), Error::EmptyDraft);
    assert!(matches!(err(|a| a.vocab = 0), Error::Shape(_)));
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
    assert!(matches!(err(|a| a.vocab = 1 << 31), Error::TooLarge(_)));
    assert!(matches!(err(|a| a.batch = 1 << 31), Error::TooLarge(_)));
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
        err(|a| a.target_batch_stride = usize::MAX / 2),
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
    assert!(a.batch * 9 * a.vocab > 1 << 31);
    a.check().unwrap();
}

/// `good()` with a vocabulary of `v` (strides follow).
fn with_vocab(v: usize) -> RawVerifyArgs {
    let mut a = good();
    a.vocab = v;
    a.target_row_stride = v;
    a.target_batch_stride = (a.max_draft + 1) * v;
    a.draft_row_stride = v;
    a.draft_batch_stride = a.max_draft * v;
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

/// `asps_verify` with no verifier: the host checks run first, so a status other than
/// ASPS_ERR_INVALID_ARGUMENT (the null handle) means they refused the arguments.
fn c_verify_without_a_device(args: &AspsVerifyArgs) -> i32 {
    // SAFETY: a valid argument struct (fake device addresses, never dereferenced: the null
    // handle stops the call before any launch); null stream.
    unsafe { asps_verify(std::ptr::null_mut(), args, std::ptr::null_mut()) }
}

#[test]
fn c_abi_caps_the_vocabulary() {
    let c_with_vocab = |v: usize| {
        let g = with_vocab(v);
        let mut a = c_args();
        a.vocab = v as i32;
        a.target_row_stride = g.target_row_stride as i64;
        a.target_batch_stride = g.target_batch_stride as i64;
        a.draft_row_stride = g.draft_row_stride as i64;
        a.draft_batch_stride = g.draft_batch_stride as i64;
        a
    };
    assert_eq!(
        c_verify_without_a_device(&c_with_vocab(MAX_VOCAB)),
        ASPS_ERR_INVALID_ARGUMENT as i32
    );
    assert_eq!(
        c_verify_without_a_device(&c_with_vocab(MAX_VOCAB + 1)),
        ASPS_ERR_TOO_LARGE as i32
    );
    assert_eq!(
        c_verify_without_a_device(&c_with_vocab(i32::MAX as usize)),
        ASPS_ERR_TOO_LARGE as i32
    );
}

#[test]
fn null_and_misaligned_pointers() {
    assert_eq!(err(|a| a.draft = 0), Error::NullPointer("draft"));
    assert_eq!(err(|a| a.out_status = 0), Error::NullPointer("out_status"));
    assert_eq!(
        err(|a| a.target += 1),
        Error::Misaligned {
            what: "target",
            align: 2
        }
    );
    assert_eq!(
        err(|a| a.seeds += 4),
        Error::Misaligned {
            what: "seeds",
            align: 8
        }
    );
    assert_eq!(
        err(|a| a.draft_tokens += 2),
        Error::Misaligned {
            what: "draft_tokens",
            align: 4
        }
    );
    // f32 logits need 4-byte alignment, bf16 only 2.
    assert_eq!(
        err(|a| {
            a.dtype = Dtype::F32;
            a.draft += 2
        }),
        Error::Misaligned {
            what: "draft",
            align: 4
        }
    );
}

fn c_args() -> AspsVerifyArgs {
    let g = good();
    AspsVerifyArgs {
        method: ASPS_METHOD_SPS as i32,
        dtype: ASPS_DTYPE_F16 as i32,
        batch: g.batch as i32,
        max_draft: g.max_draft as i32,
        vocab: g.vocab as i32,
        reserved: 0,
        target_logits: g.target as *const _,
        target_batch_stride: g.target_batch_stride as i64,
        target_row_stride: g.target_row_stride as i64,
        draft_logits: g.draft as *const _,
        draft_batch_stride: g.draft_batch_stride as i64,
        draft_row_stride: g.draft_row_stride as i64,
        draft_tokens: g.draft_tokens as *const _,
        draft_lens: g.draft_lens as *const _,
        temperatures: g.temperatures as *const _,
        seeds: g.seeds as *const _,
        offsets: g.offsets as *mut _,
        out_tokens: g.out_tokens as *mut _,
        out_num_emitted: g.out_num_emitted as *mut _,
        out_num_accepted: g.out_num_accepted as *mut _,
        out_status: g.out_status as *mut _,
    }
}

#[test]
fn c_arguments_convert_and_map_to_status_codes() {
    let raw = raw_args(&c_args()).unwrap();
    assert_eq!((raw.method, raw.dtype), (Method::Sps, Dtype::F16));
    raw.check().unwrap();
    let mut a = c_args();
    a.dtype = 3;
    assert_eq!(
        status_of(&raw_args(&a).unwrap_err()),
        ASPS_ERR_INVALID_ARGUMENT as i32
    );
    let mut a = c_args();
    a.target_row_stride = -5;
    assert_eq!(status_of(&raw_args(&a).unwrap_err()), ASPS_ERR_SHAPE as i32);
    let mut a = c_args();
    a.vocab = -1;
    assert_eq!(status_of(&raw_args(&a).unwrap_err()), ASPS_ERR_SHAPE as i32);
    let mut a = c_args();
    a.reserved = 1;
    assert_eq!(
        status_of(&raw_args(&a).unwrap_err()),
        ASPS_ERR_INVALID_ARGUMENT as i32
    );
    assert_eq!(
        status_of(&Error::NullPointer("x")),
        ASPS_ERR_NULL_POINTER as i32
    );
    assert_eq!(
        status_of(&Error::Misaligned {
            what: "x",
            align: 8
        }),
        ASPS_ERR_MISALIGNED as i32
    );
    assert_eq!(
        status_of(&Error::KernelsMissing),
        ASPS_ERR_KERNELS_MISSING as i32
    );
    assert_eq!(
        status_of(&Error::NoCudaDriver(String::new())),
        ASPS_ERR_NO_DRIVER as i32
    );
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
    ];
    for (code, status) in pairs {
        assert_eq!(RequestStatus::from_code(code as i32), status);
    }
    assert_eq!(RequestStatus::from_code(99), RequestStatus::Unknown(99));
}
