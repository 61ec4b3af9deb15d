//! Element types of logits: f32, f16 and bf16 (the `half` crate), on the host and the device.

use half::{bf16, f16};

/// The element type of a logits buffer, as the kernels name it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Dtype {
    /// IEEE binary32.
    F32,
    /// IEEE binary16.
    F16,
    /// bfloat16.
    BF16,
}

impl Dtype {
    /// Every element type, in the order of their codes (`AspsDtype` in include/asps.h).
    pub const ALL: [Dtype; 3] = [Dtype::F32, Dtype::F16, Dtype::BF16];

    /// The type's place in [`Dtype::ALL`] (its code).
    pub(crate) const fn index(self) -> usize {
        match self {
            Dtype::F32 => 0,
            Dtype::F16 => 1,
            Dtype::BF16 => 2,
        }
    }

    /// Size of one element in bytes.
    pub const fn size(self) -> usize {
        match self {
            Dtype::F32 => 4,
            Dtype::F16 | Dtype::BF16 => 2,
        }
    }

    /// The suffix of the kernel instantiated for this type (`asps_softmax_stats_bf16`, ...).
    pub const fn kernel_suffix(self) -> &'static str {
        match self {
            Dtype::F32 => "f32",
            Dtype::F16 => "f16",
            Dtype::BF16 => "bf16",
        }
    }
}

mod sealed {
    pub trait Sealed {}
    impl Sealed for f32 {}
    impl Sealed for half::f16 {}
    impl Sealed for half::bf16 {}
}

/// A logit element type: `f32`, [`half::f16`] or [`half::bf16`]. Sealed: the kernels are
/// instantiated for exactly these three.
pub trait Logit: Copy + Send + Sync + sealed::Sealed + 'static {
    /// The tag of this type.
    const DTYPE: Dtype;
    /// The value, exactly, as an f64 (every f32, f16 and bf16 is an f64).
    fn to_f64(self) -> f64;
    /// The nearest value of this type to `x` (for building test inputs).
    fn from_f64(x: f64) -> Self;
}

impl Logit for f32 {
    const DTYPE: Dtype = Dtype::F32;
    fn to_f64(self) -> f64 {
        f64::from(self)
    }
    fn from_f64(x: f64) -> Self {
        x as f32
    }
}

impl Logit for f16 {
    const DTYPE: Dtype = Dtype::F16;
    fn to_f64(self) -> f64 {
        f16::to_f64(self)
    }
    fn from_f64(x: f64) -> Self {
        f16::from_f64(x)
    }
}

impl Logit for bf16 {
    const DTYPE: Dtype = Dtype::BF16;
    fn to_f64(self) -> f64 {
        bf16::to_f64(self)
    }
    fn from_f64(x: f64) -> Self {
        bf16::from_f64(x)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conversions_are_exact_for_representable_values() {
        for x in [0.0, -1.5, 1024.0, -65504.0, f64::NEG_INFINITY] {
            assert_eq!(f32::from_f64(x).to_f64(), x);
            assert_eq!(f16::from_f64(x).to_f64(), x);
        }
        assert_eq!(bf16::from_f64(-1.5).to_f64(), -1.5);
        assert!(f16::from_f64(f64::NAN).to_f64().is_nan());
        assert_eq!(Dtype::BF16.size(), 2);
        assert_eq!(<f32 as Logit>::DTYPE.kernel_suffix(), "f32");
    }
}
