//! A property test of the one argument path: calls drawn at random from valid ones with random
//! bad fields, through the C ABI (`asps_verify`, sometimes with an older, shorter struct) and
//! the raw front (`Verifier::verify_raw`). Every call must either be refused with an error
//! before anything is launched (host-checkable fields: null, misaligned or overlapping
//! pointers, zero, negative or huge sizes and strides, unknown codes, bad struct sizes), or run
//! and report each request's status (device values: NaN, infinite, negative or out-of-domain
//! temperatures, out-of-range truncations, tokens and draft lengths, bad logits), every clean
//! request verified and every spoiled one refused. Accepted calls only ever span memory they
//! were given, so the emulated device, which checks every access against its allocations,
//! stops any kernel that strays; CI runs this under ASan and UBSan too (README, "Testing
//! without a GPU").
//!
//! Without a GPU or the emulated device it prints SKIPPED. The seed is fixed; a failure names
//! its case, and `ASPS_FUZZ_CASES` / `ASPS_FUZZ_SEED` rerun more or other cases.

#[path = "common/batch.rs"]
mod batch;
#[path = "common/gpu.rs"]
mod gpu;

use std::ffi::c_void;
use std::mem::{offset_of, size_of};
use std::sync::Arc;

use asps::capi::bindings::{ASPS_OK, AspsVerifier};
use asps::capi::{
    AspsSampling, AspsTruncation, AspsVerifyArgs, VERIFY_ARGS_MIN_SIZE, asps_verifier_create,
    asps_verifier_destroy, asps_verify,
};
use asps::cuda::{MAX_VOCAB, RequestStatus, Verifier};
use asps::{Dtype, Method};
use cudarc::driver::{CudaSlice, CudaStream, DevicePtr};
use gpu::gpu_or_skip;
use half::{bf16, f16};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

const BMAX: usize = 4;
const NMAX: usize = 3;
const VMAX: usize = 40;
/// Elements of each logits buffer: BMAX requests of NMAX + 1 rows of up to 2 VMAX, and a lead.
const LOGITS: usize = BMAX * (NMAX + 1) * 2 * VMAX + 8;
/// Bytes of the buffer the small arrays are carved from.
const SMALL: usize = 256 * 18;

/// The device memory every call points into: the logits (one buffer per model and dtype), and
/// one buffer holding every small array, at fixed offsets.
struct Memory {
    stream: Arc<CudaStream>,
    target: [CudaSlice<u8>; 3],
    draft: [CudaSlice<u8>; 3],
    small: CudaSlice<u8>,
}

/// Where each small array sits in `Memory::small`, 256 bytes apart (B = BMAX fits in 32 bytes;
/// tokens and outputs get more).
#[derive(Clone, Copy)]
enum Slot {
    Tokens = 0,
    Lens = 2,
    Seeds = 3,
    Offsets = 4,
    OutTokens = 5,
    Emitted = 7,
    Accepted = 8,
    Status = 9,
    Temperature = 10,
    DraftTemperature = 11,
    TopK = 12,
    TopP = 13,
    MinP = 14,
    DraftTopK = 15,
    DraftTopP = 16,
    DraftMinP = 17,
}

impl Memory {
    fn new(stream: &Arc<CudaStream>) -> Self {
        // The target: values that vary along the row; the draft: one value, so that every token
        // is a largest logit and survives any truncation (always drawable by any drafter).
        let target = |i: usize| ((i * 37 % 11) as f64 - 5.0) * 0.3;
        let logits = |f: &dyn Fn(usize) -> f64| -> [CudaSlice<u8>; 3] {
            let bytes = |v: Vec<u8>| stream.clone_htod(&v).unwrap();
            [
                bytes(
                    (0..LOGITS)
                        .flat_map(|i| (f(i) as f32).to_ne_bytes())
                        .collect(),
                ),
                bytes(
                    (0..LOGITS)
                        .flat_map(|i| f16::from_f64(f(i)).to_ne_bytes())
                        .collect(),
                ),
                bytes(
                    (0..LOGITS)
                        .flat_map(|i| bf16::from_f64(f(i)).to_ne_bytes())
                        .collect(),
                ),
            ]
        };
        Memory {
            stream: stream.clone(),
            target: logits(&target),
            draft: logits(&|_| 0.5),
            small: stream.alloc_zeros::<u8>(SMALL).unwrap(),
        }
    }

    fn base(&self) -> u64 {
        self.small.device_ptr(&self.stream).0
    }

    fn addr(&self, slot: Slot) -> u64 {
        self.base() + 256 * slot as u64
    }

    fn write<T: Copy>(&mut self, slot: Slot, values: &[T]) {
        // SAFETY: plain numbers viewed as their bytes.
        let bytes = unsafe {
            std::slice::from_raw_parts(values.as_ptr().cast::<u8>(), std::mem::size_of_val(values))
        };
        let at = 256 * slot as usize;
        let mut view = self.small.slice_mut(at..at + bytes.len());
        self.stream.memcpy_htod(bytes, &mut view).unwrap();
    }

    fn read<T: Copy + Default + cudarc::driver::DeviceRepr>(
        &self,
        slot: Slot,
        len: usize,
    ) -> Vec<T> {
        let at = 256 * slot as usize;
        let bytes = self
            .stream
            .clone_dtoh(&self.small.slice(at..at + len * size_of::<T>()))
            .unwrap();
        bytes
            .chunks_exact(size_of::<T>())
            // SAFETY: `size_of::<T>()` bytes of a plain number.
            .map(|c| unsafe { c.as_ptr().cast::<T>().read_unaligned() })
            .collect()
    }
}

/// One model's truncation arrays on the host: top-k, top-p, min-p.
type Truncations = (Vec<i32>, Vec<f32>, Vec<f32>);

/// One call: its arguments, its arrays on the host, how it goes in, and what must come out.
struct Case {
    args: AspsVerifyArgs,
    lens: Vec<i32>,
    tokens: Vec<i32>,
    temps: Vec<f32>,
    seeds: Vec<u64>,
    draft_temps: Option<Vec<f32>>,
    truncations: [Option<Truncations>; 2],
    /// Through the C ABI, with a struct of this many bytes; else the raw front.
    c_struct_size: Option<usize>,
    /// A host-checkable field was spoiled: the call must be refused. What was spoiled, for
    /// the failure message.
    refused: bool,
    spoils: Vec<String>,
    /// Per request: a device value was spoiled (the request must not verify).
    spoiled: Vec<bool>,
}

/// The size of an older header's struct, before the draft temperature.
const OLD_SIZE: usize =
    offset_of!(AspsVerifyArgs, sampling) + offset_of!(AspsSampling, draft_temperature);

/// A valid call at random over `mem` (its arrays not yet written).
fn valid_case(rng: &mut StdRng, mem: &Memory) -> Case {
    let b = rng.random_range(1..=BMAX);
    let n = rng.random_range(1..=NMAX);
    let v = [1, 2, 17, VMAX][rng.random_range(0..4)];
    let dtype = Dtype::ALL[rng.random_range(0..3)];
    let method = Method::ALL[rng.random_range(0..3)];
    let row_stride = if rng.random() {
        v
    } else {
        v + rng.random_range(1..=VMAX)
    };
    let d = Dtype::ALL.iter().position(|&x| x == dtype).unwrap();
    let elem = dtype.size() as u64;
    let lead = rng.random_range(0..4) as u64;
    let logits =
        |buf: &CudaSlice<u8>| (buf.device_ptr(&mem.stream).0 + lead * elem) as *const c_void;
    // Through the C ABI (a struct of the whole size, or an older header's), or the raw front.
    let c_struct_size = match rng.random_range(0..4) {
        0 | 1 => None,
        2 => Some(size_of::<AspsVerifyArgs>()),
        _ => Some([OLD_SIZE, VERIFY_ARGS_MIN_SIZE][rng.random_range(0..2)]),
    };
    let carries = |end: usize| c_struct_size.is_none_or(|size| size >= end);
    let pick = |rng: &mut StdRng, values: &[f32]| values[rng.random_range(0..values.len())];
    let truncations = |rng: &mut StdRng| -> Option<Truncations> {
        (carries(OLD_SIZE) && rng.random()).then(|| {
            (
                (0..b)
                    .map(|_| [0, 1, 5, 1000][rng.random_range(0..4)])
                    .collect(),
                (0..b).map(|_| pick(rng, &[1.0, 0.9, 0.3])).collect(),
                (0..b).map(|_| pick(rng, &[0.0, 0.05, 0.5])).collect(),
            )
        })
    };
    let args = AspsVerifyArgs {
        method: AspsVerifyArgs::method_code(method),
        dtype: AspsVerifyArgs::dtype_code(dtype),
        batch: b as i32,
        max_draft: n as i32,
        vocab: v as i32,
        target_logits: logits(&mem.target[d]),
        target_batch_stride: ((n + 1) * row_stride) as i64,
        target_row_stride: row_stride as i64,
        draft_logits: logits(&mem.draft[d]),
        draft_batch_stride: (n * row_stride) as i64,
        draft_row_stride: row_stride as i64,
        ..AspsVerifyArgs::new()
    };
    Case {
        args,
        lens: (0..b).map(|_| rng.random_range(1..=n as i32)).collect(),
        tokens: (0..b * n).map(|_| rng.random_range(0..v as i32)).collect(),
        temps: (0..b).map(|_| pick(rng, &[0.0, 0.5, 1.0, 2.0])).collect(),
        seeds: (0..b).map(|_| rng.random()).collect(),
        draft_temps: (carries(size_of::<AspsVerifyArgs>()) && rng.random())
            .then(|| (0..b).map(|_| pick(rng, &[0.0, 0.7, 1.5])).collect()),
        truncations: [truncations(rng), truncations(rng)],
        c_struct_size,
        refused: false,
        spoils: Vec::new(),
        spoiled: vec![false; b],
    }
}

/// Writes `c`'s arrays to `mem` and points its arguments at them.
fn upload(c: &mut Case, mem: &mut Memory) {
    mem.write(Slot::Lens, &c.lens);
    mem.write(Slot::Tokens, &c.tokens);
    mem.write(Slot::Temperature, &c.temps);
    mem.write(Slot::Seeds, &c.seeds);
    let a = &mut c.args;
    a.draft_tokens = mem.addr(Slot::Tokens) as *const i32;
    a.draft_lens = mem.addr(Slot::Lens) as *const i32;
    a.seeds = mem.addr(Slot::Seeds) as *const u64;
    a.offsets = mem.addr(Slot::Offsets) as *mut u64;
    a.out_tokens = mem.addr(Slot::OutTokens) as *mut i32;
    a.out_num_emitted = mem.addr(Slot::Emitted) as *mut i32;
    a.out_num_accepted = mem.addr(Slot::Accepted) as *mut i32;
    a.out_status = mem.addr(Slot::Status) as *mut i32;
    a.sampling.temperature = mem.addr(Slot::Temperature) as *const f32;
    a.sampling.draft_temperature = match &c.draft_temps {
        Some(dt) => {
            mem.write(Slot::DraftTemperature, dt);
            mem.addr(Slot::DraftTemperature) as *const f32
        }
        None => std::ptr::null(),
    };
    let slots = [
        [Slot::TopK, Slot::TopP, Slot::MinP],
        [Slot::DraftTopK, Slot::DraftTopP, Slot::DraftMinP],
    ];
    for (m, slots) in slots.into_iter().enumerate() {
        let arrays = match &c.truncations[m] {
            Some((k, p, mp)) => {
                mem.write(slots[0], k);
                mem.write(slots[1], p);
                mem.write(slots[2], mp);
                AspsTruncation {
                    top_k: mem.addr(slots[0]) as *const i32,
                    top_p: mem.addr(slots[1]) as *const f32,
                    min_p: mem.addr(slots[2]) as *const f32,
                }
            }
            None => AspsTruncation::default(),
        };
        if m == 0 {
            a.sampling.target = arrays;
        } else {
            a.sampling.draft = arrays;
        }
    }
}

/// Spoils one host-checkable field of the uploaded call (it must be refused).
fn spoil_host(rng: &mut StdRng, c: &mut Case) {
    // A C struct that stops before the truncation arrays does not carry a spoiled one.
    let carries_truncation = c.c_struct_size.is_none_or(|size| size >= OLD_SIZE);
    let a = &mut c.args;
    let pick = |rng: &mut StdRng, values: &[i32]| values[rng.random_range(0..values.len())];
    let kind = rng.random_range(0..16);
    c.spoils.push(format!("host field {kind}"));
    match kind {
        0 => a.target_logits = std::ptr::null(),
        1 => a.out_status = std::ptr::null_mut(),
        2 => a.sampling.temperature = std::ptr::null(),
        3 => a.seeds = (a.seeds as usize + 4) as *const u64,
        4 if carries_truncation => {
            a.sampling.target.min_p = (a.out_tokens as usize + 2) as *const f32
        }
        4 => a.sampling.temperature = (a.out_tokens as usize + 2) as *const f32,
        5 => a.out_num_accepted = a.out_num_emitted,
        6 => a.offsets = a.target_logits as *mut u64,
        7 => a.batch = pick(rng, &[0, -1, BMAX as i32 + 1, i32::MAX]),
        8 => a.max_draft = pick(rng, &[0, -3, NMAX as i32 + 1, 1 << 24]),
        9 => a.vocab = pick(rng, &[0, -1, MAX_VOCAB as i32 + 1, i32::MAX]),
        10 => a.target_row_stride = [-1, i64::from(a.vocab) - 1, i64::MIN][rng.random_range(0..3)],
        11 => {
            a.batch = a.batch.max(2);
            a.draft_batch_stride = i64::MAX / 2;
        }
        12 => a.method = pick(rng, &[-1, 3, i32::MAX]),
        13 => a.dtype = pick(rng, &[-1, 3, 99]),
        14 => a.target_logits = (a.target_logits as usize + 1) as *const c_void,
        _ => {
            // A struct size no header has: through the C ABI, too short; through the raw front,
            // anything but the whole struct.
            let whole = size_of::<AspsVerifyArgs>() as u32;
            match c.c_struct_size {
                Some(_) => c.c_struct_size = Some(rng.random_range(0..VERIFY_ARGS_MIN_SIZE)),
                None => a.struct_size = [0, 8, whole - 8, whole + 8][rng.random_range(0..4)],
            }
        }
    }
    c.refused = true;
}

/// Spoils one device value of request `i` (the call runs; the request is refused), among those
/// the call's struct carries.
fn spoil_device(rng: &mut StdRng, c: &mut Case, i: usize) {
    let b = c.args.batch as usize;
    let n = c.args.max_draft as usize;
    let carries = |end: usize| c.c_struct_size.is_none_or(|size| size >= end);
    let kinds = if carries(size_of::<AspsVerifyArgs>()) {
        5
    } else if carries(OLD_SIZE) {
        4
    } else {
        3
    };
    let pickf = |rng: &mut StdRng, values: &[f32]| values[rng.random_range(0..values.len())];
    let kind = rng.random_range(0..kinds);
    c.spoils.push(format!("device value {kind} of request {i}"));
    match kind {
        0 => c.temps[i] = pickf(rng, &[f32::NAN, -1.0, f32::INFINITY, 1e-40, 1e38]),
        1 => c.tokens[i * n] = [-1, c.args.vocab, i32::MAX][rng.random_range(0..3)],
        2 => c.lens[i] = [0, -1, n as i32 + 1, i32::MAX][rng.random_range(0..4)],
        3 => {
            // One bad truncation value of request i (the target's or the draft's arrays).
            let m = rng.random_range(0..2);
            let t =
                c.truncations[m].get_or_insert_with(|| (vec![0; b], vec![1.0; b], vec![0.0; b]));
            match rng.random_range(0..3) {
                0 => t.0[i] = -1,
                1 => t.1[i] = pickf(rng, &[0.0, f32::NAN, 1.5]),
                _ => t.2[i] = pickf(rng, &[1.0, -0.5, f32::NAN]),
            }
        }
        _ => {
            let temps = c.temps.clone();
            let dt = c.draft_temps.get_or_insert(temps);
            dt[i] = pickf(rng, &[f32::NAN, -0.5, 1e-39]);
        }
    }
    c.spoiled[i] = true;
}

/// Runs `c` through its front; Ok if the call was accepted (and queued), else the error text.
fn call(
    c: &Case,
    verifier: &mut Verifier,
    handle: *mut AspsVerifier,
    mem: &Memory,
) -> Result<(), String> {
    match c.c_struct_size {
        Some(size) => {
            // The caller's struct of `size` bytes: the first bytes of the whole one.
            let mut bytes = vec![0u64; size.div_ceil(8).max(1)];
            // SAFETY: `bytes` holds at least min(size, sizeof) bytes; plain old data.
            unsafe {
                std::ptr::copy_nonoverlapping(
                    (&raw const c.args).cast::<u8>(),
                    bytes.as_mut_ptr().cast::<u8>(),
                    size.min(size_of::<AspsVerifyArgs>()),
                );
                if size >= 4 {
                    bytes.as_mut_ptr().cast::<u32>().write(size as u32);
                }
            }
            // SAFETY: a live handle; the struct's `size` bytes are readable; every pointer the
            // checks let through lies in `mem`'s buffers, within the extent of its shape.
            let rc = unsafe { asps_verify(handle, bytes.as_ptr().cast(), std::ptr::null_mut()) };
            if rc == ASPS_OK as i32 {
                Ok(())
            } else {
                Err(format!("status {rc}"))
            }
        }
        None => {
            // SAFETY: as above, on the verifier's own stream of the same context.
            unsafe { verifier.verify_raw(&c.args, mem.stream.cu_stream()) }
                .map_err(|e| e.to_string())
        }
    }
}

#[test]
fn bad_arguments_are_refused_or_reported_never_followed() {
    let Some(gpu) = gpu_or_skip("bad_arguments_are_refused_or_reported_never_followed") else {
        return;
    };
    let cases: usize = std::env::var("ASPS_FUZZ_CASES").map_or(3000, |v| v.parse().unwrap());
    let seed: u64 = std::env::var("ASPS_FUZZ_SEED").map_or(2026, |v| v.parse().unwrap());
    let stream = gpu.context().default_stream();
    let mut mem = Memory::new(&stream);
    let mut verifier = Verifier::new(&gpu, &stream, BMAX, NMAX).unwrap();
    let mut handle: *mut AspsVerifier = std::ptr::null_mut();
    // SAFETY: writes one handle.
    assert_eq!(
        unsafe { asps_verifier_create(0, BMAX as i32, NMAX as i32, &mut handle) },
        ASPS_OK as i32
    );
    let mut rng = StdRng::seed_from_u64(seed);
    let (mut refused, mut ran, mut spoiled_requests) = (0, 0, 0);
    for k in 0..cases {
        let what = format!(
            "case {k} of seed {seed} (rerun: ASPS_FUZZ_SEED={seed} ASPS_FUZZ_CASES={})",
            k + 1
        );
        let mut c = valid_case(&mut rng, &mem);
        let kind = rng.random_range(0..3);
        if kind == 2 {
            for _ in 0..rng.random_range(1..=2) {
                let i = rng.random_range(0..c.args.batch as usize);
                spoil_device(&mut rng, &mut c, i);
            }
        }
        upload(&mut c, &mut mem);
        if kind == 1 {
            spoil_host(&mut rng, &mut c);
        }
        mem.write(Slot::Offsets, &[7u64; BMAX]);
        let result = call(&c, &mut verifier, handle, &mem);
        let offsets: Vec<u64> = mem.read(Slot::Offsets, BMAX);
        if c.refused {
            assert!(
                result.is_err(),
                "{what}: a call with {:?} was accepted",
                c.spoils
            );
            assert_eq!(
                offsets, [7; BMAX],
                "{what}: a refused call launched kernels"
            );
            refused += 1;
            continue;
        }
        result.unwrap_or_else(|e| panic!("{what}: a valid call was refused: {e}"));
        ran += 1;
        let (b, n) = (c.args.batch as usize, c.args.max_draft as usize);
        let status: Vec<i32> = mem.read(Slot::Status, b);
        let emitted: Vec<i32> = mem.read(Slot::Emitted, b);
        let accepted: Vec<i32> = mem.read(Slot::Accepted, b);
        let out: Vec<i32> = mem.read(Slot::OutTokens, b * (n + 1));
        for i in 0..b {
            let s = RequestStatus::from_code(status[i]);
            assert_eq!(offsets[i], 8, "{what}: request {i}'s offset advances once");
            if c.spoiled[i] {
                spoiled_requests += 1;
                assert_ne!(s, RequestStatus::Ok, "{what}: spoiled request {i} verified");
                assert!(!matches!(s, RequestStatus::Unknown(_)), "{what}: {s:?}");
                assert_eq!((emitted[i], accepted[i]), (0, 0), "{what}: request {i}");
                continue;
            }
            assert_eq!(s, RequestStatus::Ok, "{what}: clean request {i}");
            let len = c.lens[i];
            assert!(
                (0..=len).contains(&accepted[i]) && emitted[i] == accepted[i] + 1,
                "{what}: request {i} kept {} and emitted {} of a draft of {len}",
                accepted[i],
                emitted[i]
            );
            let row = &out[i * (n + 1)..][..n + 1];
            for (j, &t) in row.iter().enumerate() {
                if j < emitted[i] as usize {
                    assert!((0..c.args.vocab).contains(&t), "{what}: token {t}");
                } else {
                    assert_eq!(t, -1, "{what}: padding");
                }
            }
        }
    }
    println!(
        "{cases} cases (seed {seed}): {refused} refused before launch, {ran} run, \
         {spoiled_requests} spoiled requests reported"
    );
    assert!(
        refused > cases / 5 && ran > cases / 5,
        "{refused} refused, {ran} run"
    );
    // SAFETY: the handle from asps_verifier_create, its work finished (the reads above
    // synchronised the stream).
    assert_eq!(unsafe { asps_verifier_destroy(handle) }, ASPS_OK as i32);
}
