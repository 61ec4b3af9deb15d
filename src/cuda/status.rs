//! Per-row status codes written by the kernels (kernels/common.cuh, `RowStatusCode`).

use crate::error::RowProblem;

/// What a kernel found in a row.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RowStatus {
    /// The row is usable.
    Ok,
    /// An entry is NaN.
    NaN,
    /// An entry is +inf.
    PosInf,
    /// Every entry is -inf.
    AllMasked,
    /// A code this crate does not know (a kernel/crate mismatch).
    Unknown(i32),
}

impl RowStatus {
    /// The status of a code written by a kernel.
    pub fn from_code(code: i32) -> Self {
        match code {
            0 => RowStatus::Ok,
            1 => RowStatus::NaN,
            2 => RowStatus::PosInf,
            3 => RowStatus::AllMasked,
            other => RowStatus::Unknown(other),
        }
    }

    /// The matching [`RowProblem`], or `None` for a usable row.
    pub fn problem(self) -> Option<RowProblem> {
        match self {
            RowStatus::Ok => None,
            RowStatus::NaN => Some(RowProblem::NaN),
            RowStatus::PosInf | RowStatus::Unknown(_) => Some(RowProblem::NotFinite),
            RowStatus::AllMasked => Some(RowProblem::AllMasked),
        }
    }
}
