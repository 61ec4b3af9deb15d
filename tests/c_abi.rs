//! The C ABI from C: tests/c/verify_smoke.c, compiled by build.rs with the cc crate against
//! include/asps.h and linked into this test, checks the host-side argument checks everywhere
//! (struct sizes of older and newer headers included, the older struct ending where readable
//! memory does) and, when a GPU (or the emulated device of tests/emu) is present, runs real
//! verifications: greedy and ASpS with p = q; the same from an older header's struct and with
//! the draft temperature given; a greedy drafter's impossible token; a bad truncation reported
//! per request.

use std::hint::black_box;
use std::os::raw::c_int;

unsafe extern "C" {
    fn asps_c_smoke_main() -> c_int;
}

#[test]
fn c_program_links_and_calls_the_entry_points() {
    // The C archive is linked after the crate, so the entry points it calls must already be
    // part of the link: name them here.
    black_box([
        asps::capi::asps_verifier_create as *const (),
        asps::capi::asps_verifier_destroy as *const (),
        asps::capi::asps_verify as *const (),
        asps::capi::asps_status_string as *const (),
        asps::capi::asps_request_status_string as *const (),
    ]);
    // A build for the emulated device must find it (tests/emu/gpu), or the C program's GPU part
    // would skip and pass without running.
    if option_env!("ASPS_EMULATED_DEVICE") == Some("1") {
        if let Err(e) = asps::cuda::Gpu::new(0) {
            panic!("built for the emulated device, but it is not loaded ({e})");
        }
    }
    // SAFETY: a C function with no arguments that only calls this crate's C ABI.
    let failures = unsafe { asps_c_smoke_main() };
    assert_eq!(
        failures, 0,
        "the C program reported {failures} failed checks (see stderr)"
    );
}
