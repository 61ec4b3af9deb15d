//! The crate's error type. Every entry point, CPU or GPU, reports bad input and missing
//! hardware through [`Error`]; nothing in this crate panics on caller input.

use std::fmt;

/// What was wrong with a row of logits or probabilities.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RowProblem {
    /// The row has no entries (V = 0).
    Empty,
    /// An entry is NaN.
    NaN,
    /// An entry is +inf (logits) or not a finite number (probabilities).
    NotFinite,
    /// Every entry is -inf (logits) or 0 (probabilities): no token can be emitted.
    AllMasked,
    /// A probability is negative.
    Negative,
    /// The probabilities do not sum to 1 (within 1e-9).
    NotNormalised,
}

impl fmt::Display for RowProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            RowProblem::Empty => "is empty (V = 0)",
            RowProblem::NaN => "holds NaN",
            RowProblem::NotFinite => "holds +inf or a non-finite value",
            RowProblem::AllMasked => {
                "is entirely masked (every logit -inf, or every probability 0)"
            }
            RowProblem::Negative => "holds a negative probability",
            RowProblem::NotNormalised => "does not sum to 1",
        })
    }
}

/// Which model a row belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Model {
    /// The target (large) model: rows `0..=n`.
    Target,
    /// The draft (small) model: rows `0..n`.
    Draft,
}

impl fmt::Display for Model {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Model::Target => "target",
            Model::Draft => "draft",
        })
    }
}

/// Errors returned by this crate.
#[derive(Debug, Clone, PartialEq)]
pub enum Error {
    /// A row of logits or probabilities cannot be used.
    BadRow {
        /// Which model the row belongs to.
        model: Model,
        /// The row's index (0-based).
        row: usize,
        /// What is wrong with it.
        problem: RowProblem,
    },
    /// A standalone row of logits or probabilities (not part of a request) cannot be used.
    BadInput(RowProblem),
    /// The draft is empty (n = 0): there is nothing to verify.
    EmptyDraft,
    /// The number of rows does not match the draft length: `target` must have n + 1 rows and
    /// `draft` n rows for n draft tokens.
    RowCount {
        /// Which model's rows are miscounted.
        model: Model,
        /// Rows expected.
        expected: usize,
        /// Rows given.
        got: usize,
    },
    /// Rows have different lengths (every row must have V entries).
    RowLength {
        /// Which model the offending row belongs to.
        model: Model,
        /// The row's index.
        row: usize,
        /// The vocabulary size of the first target row.
        expected: usize,
        /// This row's length.
        got: usize,
    },
    /// A draft token id is not below the vocabulary size.
    TokenOutOfRange {
        /// The draft position (0-based).
        position: usize,
        /// The token id.
        token: u32,
        /// The vocabulary size.
        vocab: usize,
    },
    /// The draft token at `position` has probability 0 (or a -inf logit) under the draft
    /// model, so the draft model could not have proposed it.
    ImpossibleDraftToken {
        /// The draft position (0-based).
        position: usize,
        /// The token id.
        token: u32,
    },
    /// The draw rejected a draft token whose residual has no mass after rounding: the target
    /// and draft rows agree to the last bit everywhere but at that token (f64 in the reference;
    /// see [`crate::cuda::RequestStatus::NoOutcome`] for the kernels' f32 case).
    NoOutcome,
    /// The temperature is neither 0 (greedy, where that is allowed) nor valid
    /// ([`crate::reference::temperature_is_valid`]): negative, NaN, infinite, or so small or
    /// large that 1/T is not a normal f32.
    BadTemperature(f64),
    /// A truncation parameter is out of its domain (top_k < 0, top_p outside (0, 1], min_p
    /// outside [0, 1), NaN); the message says whose and which.
    BadTruncation(String),
    /// A size or shape argument is invalid; the message says which and why.
    Shape(String),
    /// A shape is too large: an index would pass what the kernels address.
    TooLarge(String),
    /// A device pointer is null.
    NullPointer(&'static str),
    /// A device pointer is not aligned to its element type.
    Misaligned {
        /// Which pointer.
        what: &'static str,
        /// The alignment it needs, in bytes.
        align: usize,
    },
    /// An array that the kernels write shares bytes with another array of the same call.
    Overlap {
        /// The written array.
        written: &'static str,
        /// The array it overlaps.
        other: &'static str,
    },
    /// A call needs more room than a workspace or output buffer was made with.
    Capacity(String),
    /// An argument has a value outside its domain (an unknown dtype or method code).
    InvalidArgument(String),
    /// The crate was built without the CUDA kernels (nvcc was not found at build time, or the
    /// build was for the emulated device of the crate's tests, `ASPS_EMULATED_DEVICE=1`, and
    /// the device is a real one).
    KernelsMissing,
    /// No usable CUDA driver or device on this machine.
    NoCudaDriver(String),
    /// The CUDA driver reported an error.
    Cuda(String),
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::BadRow {
                model,
                row,
                problem,
            } => write!(f, "{model} row {row} {problem}"),
            Error::BadInput(problem) => write!(f, "the row {problem}"),
            Error::NoOutcome => f.write_str(
                "no outcome has positive probability: the target and draft rows are numerically degenerate",
            ),
            Error::EmptyDraft => f.write_str("the draft is empty (n = 0): nothing to verify"),
            Error::RowCount {
                model,
                expected,
                got,
            } => write!(f, "expected {expected} {model} rows, got {got}"),
            Error::RowLength {
                model,
                row,
                expected,
                got,
            } => write!(
                f,
                "{model} row {row} has {got} entries, but the vocabulary has {expected}"
            ),
            Error::TokenOutOfRange {
                position,
                token,
                vocab,
            } => write!(
                f,
                "draft token {token} at position {position} is out of range for a vocabulary of {vocab}"
            ),
            Error::ImpossibleDraftToken { position, token } => write!(
                f,
                "draft token {token} at position {position} has probability 0 under the draft model"
            ),
            Error::BadTemperature(t) => write!(
                f,
                "temperature {t} is invalid: it must be 0 (greedy, where allowed) or in \
                 [{:e}, {:e}], where 1/T is a normal f32",
                crate::reference::MIN_TEMPERATURE,
                crate::reference::MAX_TEMPERATURE
            ),
            Error::BadTruncation(msg) => write!(f, "bad truncation parameter: {msg}"),
            Error::Shape(msg) => write!(f, "bad shape: {msg}"),
            Error::TooLarge(msg) => write!(f, "too large: {msg}"),
            Error::NullPointer(what) => write!(f, "the device pointer `{what}` is null"),
            Error::Misaligned { what, align } => write!(
                f,
                "the device pointer `{what}` is not aligned to {align} bytes"
            ),
            Error::Overlap { written, other } => write!(
                f,
                "the device array `{written}`, which the kernels write, overlaps `{other}`"
            ),
            Error::Capacity(msg) => write!(f, "not enough room: {msg}"),
            Error::InvalidArgument(msg) => write!(f, "invalid argument: {msg}"),
            Error::KernelsMissing => f.write_str(
                "asps was built without its CUDA kernels (nvcc was not found at build time, or \
                 the build was for the emulated device: ASPS_EMULATED_DEVICE=1); install the \
                 CUDA toolkit or set NVCC, then rebuild",
            ),
            Error::NoCudaDriver(msg) => write!(f, "no usable CUDA driver or device: {msg}"),
            Error::Cuda(msg) => write!(f, "CUDA error: {msg}"),
        }
    }
}

impl std::error::Error for Error {}

impl From<cudarc::driver::DriverError> for Error {
    fn from(e: cudarc::driver::DriverError) -> Self {
        Error::Cuda(e.to_string())
    }
}

/// Shorthand for `Result<T, asps::Error>`.
pub type Result<T> = std::result::Result<T, Error>;
