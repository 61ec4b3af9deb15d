//! Philox4x32-10 against the Random123 known-answer vectors (Random123 `kat_vectors`, lines
//! "philox4x32 10 ..."; columns: counter[4], key[2], expected output[4]).

use asps::rng::philox4x32_10;

/// (counter, key, output) from Random123's kat_vectors.
pub const KAT: [([u32; 4], [u32; 2], [u32; 4]); 3] = [
    (
        [0, 0, 0, 0],
        [0, 0],
        [0x6627e8d5, 0xe169c58d, 0xbc57ac4c, 0x9b00dbd8],
    ),
    (
        [u32::MAX; 4],
        [u32::MAX; 2],
        [0x408f276d, 0x41c83b0e, 0xa20bc7c6, 0x6d5451fd],
    ),
    (
        [0x243f6a88, 0x85a308d3, 0x13198a2e, 0x03707344],
        [0xa4093822, 0x299f31d0],
        [0xd16cfe09, 0x94fdcceb, 0x5001e420, 0x24126ea1],
    ),
];

#[test]
fn philox4x32_10_matches_random123_known_answers() {
    for (counter, key, want) in KAT {
        assert_eq!(
            philox4x32_10(counter, key),
            want,
            "counter {counter:x?} key {key:x?}"
        );
    }
}

/// The uniforms drawn from the generator look uniform: mean 1/2 and variance 1/12 over 10^5
/// draws, within 5 standard errors (fixed keys, so the outcome is deterministic).
#[test]
fn uniforms_have_the_right_first_two_moments() {
    use asps::rng::{NoiseKey, Purpose};
    let key = NoiseKey::new(0x5eed, 9);
    let n = 100_000;
    let us: Vec<f64> = (0..n / 2)
        .flat_map(|j| key.tile_uniforms(Purpose::Residual, 3, j))
        .collect();
    let mean = us.iter().sum::<f64>() / n as f64;
    let var = us.iter().map(|u| (u - mean).powi(2)).sum::<f64>() / n as f64;
    let se_mean = (1.0f64 / 12.0 / n as f64).sqrt();
    assert!((mean - 0.5).abs() < 5.0 * se_mean, "mean {mean}");
    // Var of (U - 1/2)^2 is 1/180; its standard error over n draws:
    let se_var = (1.0f64 / 180.0 / n as f64).sqrt();
    assert!((var - 1.0 / 12.0).abs() < 5.0 * se_var, "variance {var}");
}
