//! The emulated CUDA device itself (tests/emu/device), through the raw driver API: it refuses
//! what a driver refuses (frees and copies outside allocations, capture-rule violations, bad
//! launches, a real fatbin), a kernel that reads outside its buffers is stopped, and a build
//! for the emulated device refuses to run on any other device. Runs only on the emulated device
//! (`tests/emu/gpu cargo test --release --test emu_device`); elsewhere each test prints SKIPPED.

#[path = "common/batch.rs"]
mod batch;
#[path = "common/gpu.rs"]
mod gpu;

use std::ffi::{CString, c_void};
use std::io::Write;
use std::process::Command;

use asps::Error;
use asps::cuda::testing::AspsVerifyParams;
use cudarc::driver::sys::{self, CUresult};
use gpu::{TestGpu, gpu_or_skip};

/// An image of the production kernels, and one of the test kernels (build.rs writes both).
const IMAGE: &[u8] = b"ASPS-EMULATED-DEVICE-IMAGE v1 kernels=verification: test\0";
const TEST_IMAGE: &[u8] = b"ASPS-EMULATED-DEVICE-IMAGE v1 kernels=testing: test\0";

fn emulated_or_skip(test: &str) -> Option<TestGpu> {
    let gpu = gpu_or_skip(test)?;
    if gpu.emulated {
        return Some(gpu);
    }
    let _ = writeln!(
        std::io::stderr(),
        "SKIPPED {test}: a test of the emulated device"
    );
    None
}

/// Makes the primary context current on this thread (cudarc does so lazily).
fn bind(gpu: &TestGpu) {
    gpu.context().bind_to_thread().unwrap();
}

fn alloc(bytes: usize) -> u64 {
    let mut p = 0;
    // SAFETY: writes one device address.
    assert_eq!(
        unsafe { sys::cuMemAlloc_v2(&mut p, bytes) },
        CUresult::CUDA_SUCCESS
    );
    p
}

fn module(image: &[u8]) -> (CUresult, sys::CUmodule) {
    let mut m = std::ptr::null_mut();
    // SAFETY: `image` is a NUL-terminated byte string that outlives the call.
    let rc = unsafe { sys::cuModuleLoadData(&mut m, image.as_ptr().cast()) };
    (rc, m)
}

fn function(m: sys::CUmodule, name: &str) -> (CUresult, sys::CUfunction) {
    let mut f = std::ptr::null_mut();
    let name = CString::new(name).unwrap();
    // SAFETY: a live module and a NUL-terminated name.
    let rc = unsafe { sys::cuModuleGetFunction(&mut f, m, name.as_ptr()) };
    (rc, f)
}

/// Launches f over (grid, block) on the legacy stream with `args` (pointers to each value).
fn launch(f: sys::CUfunction, grid: u32, block: u32, args: &mut [*mut c_void]) -> CUresult {
    // SAFETY: `args` holds one pointer per kernel argument, each to a live value.
    unsafe {
        sys::cuLaunchKernel(
            f,
            grid,
            1,
            1,
            block,
            1,
            1,
            0,
            std::ptr::null_mut(),
            args.as_mut_ptr(),
            std::ptr::null_mut(),
        )
    }
}

#[test]
fn frees_and_copies_outside_allocations_are_refused() {
    let Some(gpu) = emulated_or_skip("frees_and_copies_outside_allocations_are_refused") else {
        return;
    };
    bind(&gpu);
    let p = alloc(64);
    let host = [0u8; 16];
    let mut back = [0u8; 16];
    // SAFETY (each call): host buffers of 16 bytes; device addresses are checked by the device.
    unsafe {
        assert_eq!(
            sys::cuMemcpyHtoD_v2(p + 48, host.as_ptr().cast(), 16),
            CUresult::CUDA_SUCCESS
        );
        assert_eq!(
            sys::cuMemcpyHtoD_v2(p + 56, host.as_ptr().cast(), 16),
            CUresult::CUDA_ERROR_INVALID_VALUE,
            "a copy past the end"
        );
        assert_eq!(
            sys::cuMemcpyDtoH_v2(back.as_mut_ptr().cast(), p + 4096, 16),
            CUresult::CUDA_ERROR_INVALID_VALUE,
            "a copy from no allocation"
        );
        assert_eq!(
            sys::cuMemFree_v2(p + 8),
            CUresult::CUDA_ERROR_INVALID_VALUE,
            "a free inside an allocation"
        );
        assert_eq!(sys::cuMemFree_v2(p), CUresult::CUDA_SUCCESS);
        assert_eq!(
            sys::cuMemFree_v2(p),
            CUresult::CUDA_ERROR_INVALID_VALUE,
            "a double free"
        );
        assert_eq!(
            sys::cuMemcpyHtoD_v2(p, host.as_ptr().cast(), 16),
            CUresult::CUDA_ERROR_INVALID_VALUE,
            "a copy into freed memory"
        );
        // No more than the device has (16 GiB), and no size that overflows on the way.
        let mut q = 0;
        for bytes in [17usize << 30, usize::MAX - 10] {
            assert_eq!(
                sys::cuMemAlloc_v2(&mut q, bytes),
                CUresult::CUDA_ERROR_OUT_OF_MEMORY,
                "{bytes} bytes"
            );
        }
        assert_eq!(
            sys::cuMemAlloc_v2(&mut q, 0),
            CUresult::CUDA_ERROR_INVALID_VALUE
        );
    }
}

#[test]
fn capture_rules_are_enforced() {
    let Some(gpu) = emulated_or_skip("capture_rules_are_enforced") else {
        return;
    };
    let ctx = gpu.context();
    // SAFETY: no buffer of this test is used from two streams.
    unsafe { ctx.disable_event_tracking() };
    let stream = ctx.new_stream().unwrap();
    let legacy = ctx.default_stream();
    let mode = sys::CUstreamCaptureMode::CU_STREAM_CAPTURE_MODE_THREAD_LOCAL;
    let flags = sys::CUgraphInstantiate_flags(0);

    // The legacy stream cannot be captured.
    assert!(legacy.begin_capture(mode).is_err());

    // A synchronising call inside a capture fails and invalidates it.
    stream.begin_capture(mode).unwrap();
    // SAFETY: no arguments.
    assert_eq!(
        unsafe { sys::cuCtxSynchronize() },
        CUresult::CUDA_ERROR_STREAM_CAPTURE_UNSUPPORTED
    );
    let Err(err) = stream.end_capture(flags) else {
        panic!("an invalidated capture gave a graph");
    };
    assert_eq!(err.0, CUresult::CUDA_ERROR_STREAM_CAPTURE_INVALIDATED);

    // So does synchronising the capturing stream.
    stream.begin_capture(mode).unwrap();
    assert!(stream.synchronize().is_err());
    assert!(stream.end_capture(flags).is_err());

    // A capture may not wait on an event recorded outside it.
    let event = ctx.new_event(None).unwrap();
    event.record(&stream).unwrap();
    stream.begin_capture(mode).unwrap();
    let err = stream.wait(&event).unwrap_err();
    assert_eq!(err.0, CUresult::CUDA_ERROR_STREAM_CAPTURE_ISOLATION);
    assert!(stream.end_capture(flags).is_err());

    // The capture ends on the thread that began it.
    stream.begin_capture(mode).unwrap();
    let handle = stream.cu_stream() as usize;
    let other_thread = std::thread::spawn(move || {
        let mut graph = std::ptr::null_mut();
        // SAFETY: a live stream; the driver writes one handle.
        unsafe { sys::cuStreamEndCapture(handle as sys::CUstream, &mut graph) }
    });
    assert_eq!(
        other_thread.join().unwrap(),
        CUresult::CUDA_ERROR_STREAM_CAPTURE_WRONG_THREAD
    );
    stream.end_capture(flags).unwrap();

    // The legacy stream waits for blocking streams: it may not be synchronised while one
    // captures.
    let mut blocking = std::ptr::null_mut();
    // SAFETY (each call): handles made here; the driver writes one handle where asked.
    unsafe {
        assert_eq!(
            sys::cuStreamCreate(&mut blocking, 0),
            CUresult::CUDA_SUCCESS
        );
        assert_eq!(
            sys::cuStreamBeginCapture_v2(blocking, mode),
            CUresult::CUDA_SUCCESS
        );
        assert_eq!(
            sys::cuStreamSynchronize(std::ptr::null_mut()),
            CUresult::CUDA_ERROR_STREAM_CAPTURE_IMPLICIT
        );
        let mut graph = std::ptr::null_mut();
        assert_eq!(
            sys::cuStreamEndCapture(blocking, &mut graph),
            CUresult::CUDA_ERROR_STREAM_CAPTURE_INVALIDATED
        );
        assert_eq!(sys::cuStreamDestroy_v2(blocking), CUresult::CUDA_SUCCESS);
    }

    // An empty capture is a valid (empty) graph, and the stream is usable afterwards.
    stream.begin_capture(mode).unwrap();
    let graph = stream.end_capture(flags).unwrap().expect("a graph");
    graph.launch().unwrap();
    stream.synchronize().unwrap();
}

#[test]
fn bad_modules_and_launches_are_refused() {
    let Some(gpu) = emulated_or_skip("bad_modules_and_launches_are_refused") else {
        return;
    };
    bind(&gpu);
    // A CUDA fatbin (its magic number) holds no code for the emulated device.
    let fatbin = [0x50u8, 0xED, 0x55, 0xBA, 1, 0, 0, 0, 0];
    assert_eq!(module(&fatbin).0, CUresult::CUDA_ERROR_NO_BINARY_FOR_GPU);
    // An image that names no kernel set.
    let unknown = b"ASPS-EMULATED-DEVICE-IMAGE v1 kernels=other: test\0";
    assert_eq!(module(unknown).0, CUresult::CUDA_ERROR_INVALID_IMAGE);
    let (rc, m) = module(IMAGE);
    assert_eq!(rc, CUresult::CUDA_SUCCESS);
    assert_eq!(
        function(m, "asps_no_such_kernel").0,
        CUresult::CUDA_ERROR_NOT_FOUND
    );
    // Each image holds its own kernels only, as each fatbin does.
    assert_eq!(
        function(m, "asps_philox_kat").0,
        CUresult::CUDA_ERROR_NOT_FOUND
    );
    let (rc, test_module) = module(TEST_IMAGE);
    assert_eq!(rc, CUresult::CUDA_SUCCESS);
    assert_eq!(
        function(test_module, "asps_philox_kat").0,
        CUresult::CUDA_SUCCESS
    );
    assert_eq!(
        function(test_module, "asps_verify_rows_f32").0,
        CUresult::CUDA_ERROR_NOT_FOUND
    );
    let (rc, rows) = function(m, "asps_verify_rows_f32");
    assert_eq!(rc, CUresult::CUDA_SUCCESS);
    let mut params = AspsVerifyParams::default();
    let mut args = [(&mut params as *mut AspsVerifyParams).cast::<c_void>()];
    // 1024 threads: within the device's limit, beyond the kernel's launch bound of 512.
    assert_eq!(
        launch(rows, 1, 1024, &mut args),
        CUresult::CUDA_ERROR_LAUNCH_OUT_OF_RESOURCES
    );
    assert_eq!(
        launch(rows, 1, 1056, &mut args),
        CUresult::CUDA_ERROR_INVALID_VALUE
    );
    assert_eq!(
        launch(rows, 0, 512, &mut args),
        CUresult::CUDA_ERROR_INVALID_VALUE
    );
    // SAFETY: a live module, unloaded once.
    unsafe {
        assert_eq!(sys::cuModuleUnload(m), CUresult::CUDA_SUCCESS);
        assert_eq!(sys::cuModuleUnload(m), CUresult::CUDA_ERROR_INVALID_HANDLE);
    }
    assert_eq!(
        launch(rows, 1, 512, &mut args),
        CUresult::CUDA_ERROR_INVALID_HANDLE,
        "a function of an unloaded module"
    );
}

/// Runs test `test` of this binary in a child process with `env` set; returns its stderr and
/// whether it succeeded.
fn child(test: &str, env: (&str, &str)) -> (bool, String) {
    let out = Command::new(std::env::current_exe().unwrap())
        .args([test, "--exact", "--nocapture", "--test-threads=1"])
        .env(env.0, env.1)
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn a_kernel_reading_outside_its_buffers_is_stopped() {
    const TEST: &str = "a_kernel_reading_outside_its_buffers_is_stopped";
    let Some(gpu) = emulated_or_skip(TEST) else {
        return;
    };
    let child_run = std::env::var("ASPS_EMU_CHILD").as_deref() == Ok(TEST);
    bind(&gpu);
    let (rc, m) = module(IMAGE);
    assert_eq!(rc, CUresult::CUDA_SUCCESS);
    let (_, stats) = function(m, "asps_softmax_stats_f32");
    // Two rows of 64 logits, but a buffer of one row: row 1 lies outside it.
    let vocab = 64i32;
    let (mut logits, mut row_stride, mut rows) = (alloc(64 * 4), i64::from(vocab), 1i32);
    let (mut vocab_arg, mut inv_t) = (vocab, 1.0f32);
    let (mut out_max, mut out_ln, mut out_status) = (alloc(8), alloc(8), alloc(8));
    if child_run {
        rows = 2;
    }
    let mut args: Vec<*mut c_void> = vec![
        (&mut logits as *mut u64).cast(),
        (&mut row_stride as *mut i64).cast(),
        (&mut rows as *mut i32).cast(),
        (&mut vocab_arg as *mut i32).cast(),
        (&mut inv_t as *mut f32).cast(),
        (&mut out_max as *mut u64).cast(),
        (&mut out_ln as *mut u64).cast(),
        (&mut out_status as *mut u64).cast(),
    ];
    // SAFETY: zeroes the live 256-byte allocation `logits`.
    unsafe { sys::cuMemsetD8_v2(logits, 0, 256) };
    assert_eq!(
        launch(stats, rows as u32, 512, &mut args),
        CUresult::CUDA_SUCCESS
    );
    if child_run {
        panic!("the out-of-bounds read was not stopped");
    }
    let (ok, stderr) = child(TEST, ("ASPS_EMU_CHILD", TEST));
    assert!(!ok, "the child passed:\n{stderr}");
    assert!(
        stderr.contains("outside every live device allocation")
            && stderr.contains("asps_softmax_stats_f32"),
        "{stderr}"
    );
}

#[test]
fn a_build_for_the_emulated_device_refuses_other_devices() {
    const TEST: &str = "a_build_for_the_emulated_device_refuses_other_devices";
    if std::env::var("ASPS_EMU_DEVICE_NAME").is_ok() {
        // The child: the device calls itself something else.
        assert!(matches!(
            asps::cuda::Gpu::new(0),
            Err(Error::KernelsMissing)
        ));
        return;
    }
    if emulated_or_skip(TEST).is_none() {
        return;
    }
    let (ok, stderr) = child(TEST, ("ASPS_EMU_DEVICE_NAME", "NVIDIA H100 80GB HBM3"));
    assert!(ok, "{stderr}");
}
