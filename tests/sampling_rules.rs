//! The domain of a request's sampling parameters is written once in Rust
//! (src/reference/sampling.rs: `temperature_is_valid`, `Truncation::is_valid`) and once for the
//! kernels (kernels/sampling.cuh, compiled for the host by the kernel emulator). One table of
//! values, written by hand from the rule's definition, is checked against both, so neither can
//! drift: a temperature is 0 or a T whose 1/T is a finite normal f32; top_k >= 0, top_p in
//! (0, 1], min_p in [0, 1), NaN refused.

use asps::Error;
use asps::reference::{
    MAX_TEMPERATURE, MIN_TEMPERATURE, Sampling, Truncation, temperature_is_valid,
};

unsafe extern "C" {
    /// kernels/sampling.cuh's rules (tests/emu/kernel_emu.cpp): 1 when valid.
    fn asps_emu_temperature_is_valid(t: f32) -> i32;
    fn asps_emu_truncation_is_valid(top_k: i32, top_p: f32, min_p: f32) -> i32;
}

/// (temperature, valid), by the definition.
const TEMPERATURES: [(f32, bool); 19] = [
    (0.0, true),
    (-0.0, true),
    (1.0, true),
    (0.7, true),
    (1e-30, true),
    (1e30, true),
    (f32::from_bits(0x0020_0000), false), // 2^-128: 1/T = 2^128 overflows
    (f32::from_bits(0x002E_2A8E), false), // 1/T finite, log2(e)/T overflows
    (f32::from_bits(0x002E_2A8F), true),  // about 4.2397e-39, the smallest valid
    (2.8e-39, false),
    (1e-45, false),                       // the smallest subnormal
    (f32::from_bits(0x7E80_0000), true),  // 2^126: 1/T = 2^-126, the smallest normal
    (f32::from_bits(0x7E80_0001), false), // 2^126 (1 + 2^-23): 1/T subnormal
    (f32::MAX, false),
    (f32::INFINITY, false),
    (f32::NEG_INFINITY, false),
    (-1.0, false),
    (-1e-40, false),
    (f32::NAN, false),
];

/// (top_k, top_p, min_p, valid), by the definition.
const TRUNCATIONS: [(i32, f32, f32, bool); 16] = [
    (0, 1.0, 0.0, true),
    (50, 0.9, 0.05, true),
    (i32::MAX, 1.0, 0.0, true),
    (1, 1e-30, 0.999_999, true),
    (-1, 1.0, 0.0, false),
    (i32::MIN, 1.0, 0.0, false),
    (0, 0.0, 0.0, false),
    (0, -0.5, 0.0, false),
    (0, 1.000_000_1, 0.0, false),
    (0, f32::NAN, 0.0, false),
    (0, f32::INFINITY, 0.0, false),
    (0, 1.0, 1.0, false),
    (0, 1.0, -0.0, true),
    (0, 1.0, -1e-30, false),
    (0, 1.0, f32::NAN, false),
    (0, 1.0, f32::INFINITY, false),
];

#[test]
fn the_table_holds_the_definition() {
    // The boundaries are the f32s next to where 1/T stops being a normal number or log2(e)/T
    // (1/T times log2(e), in f32: the kernels' exponential factor) stops being finite.
    let log2e = std::f32::consts::LOG2_E;
    for (t, valid) in TEMPERATURES {
        if t.is_finite() && t > 0.0 {
            let inv = 1.0f32 / t;
            let ok = inv.is_normal() && (inv * log2e).is_finite();
            assert_eq!(ok, valid, "T = {t:e}: 1/T = {inv:e}");
        }
    }
    assert_eq!(MIN_TEMPERATURE, TEMPERATURES[8].0);
    assert_eq!(MAX_TEMPERATURE, TEMPERATURES[11].0);
    assert_eq!(TEMPERATURES[6].0, 2f32.powi(-128));
    assert_eq!(TEMPERATURES[7].0, MIN_TEMPERATURE.next_down());
    assert_eq!(TEMPERATURES[11].0, 2f32.powi(126));
    assert!((1.0f32 / MIN_TEMPERATURE.next_down()).is_finite());
    assert!(!((1.0f32 / MIN_TEMPERATURE.next_down()) * log2e).is_finite());
    assert!(((1.0f32 / MIN_TEMPERATURE) * log2e).is_finite());
    assert!(!(1.0f32 / MAX_TEMPERATURE.next_up()).is_normal());
}

#[test]
fn rust_and_kernel_temperature_rules_agree_with_the_table() {
    for (t, valid) in TEMPERATURES {
        assert_eq!(temperature_is_valid(f64::from(t)), valid, "Rust, T = {t:e}");
        // SAFETY: a pure function of a float.
        let kernel = unsafe { asps_emu_temperature_is_valid(t) } != 0;
        assert_eq!(kernel, valid, "kernels, T = {t:e}");
        // Both models' temperatures go through the same rule.
        let check = |s: Sampling| s.check();
        let as_target = check(Sampling::plain(f64::from(t)));
        let as_draft = check(Sampling {
            draft_temperature: Some(f64::from(t)),
            ..Sampling::plain(1.0)
        });
        for r in [as_target, as_draft] {
            assert_eq!(r.is_ok(), valid, "Sampling::check, T = {t:e}");
            if !valid {
                assert!(matches!(r, Err(Error::BadTemperature(_))));
            }
        }
    }
}

#[test]
fn rust_and_kernel_truncation_rules_agree_with_the_table() {
    for (top_k, top_p, min_p, valid) in TRUNCATIONS {
        let t = Truncation {
            top_k,
            top_p,
            min_p,
        };
        assert_eq!(t.is_valid(), valid, "Rust, {t:?}");
        assert_eq!(t.check(asps::Model::Draft).is_ok(), valid, "{t:?}");
        // SAFETY: a pure function of three numbers.
        let kernel = unsafe { asps_emu_truncation_is_valid(top_k, top_p, min_p) } != 0;
        assert_eq!(kernel, valid, "kernels, {t:?}");
    }
}
