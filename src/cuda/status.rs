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

/// What the verification kernels report for one request (`out_status`; `AspsRequestStatus` in
/// include/asps.h). A request that is not [`RequestStatus::Ok`] emits nothing (its tokens are
/// all -1 and its counts 0); its offset is advanced all the same.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RequestStatus {
    /// Verified.
    Ok,
    /// A row (target or draft, within the request's draft length) holds NaN.
    NaN,
    /// A row holds +inf.
    PosInf,
    /// A row is entirely -inf.
    AllMasked,
    /// A draft token id is < 0 or >= V.
    TokenOutOfRange,
    /// The draft model gives a draft token a logit of -inf, or (with truncation) the draft's
    /// truncation drops it: it could not have been drafted.
    ImpossibleDraftToken,
    /// The request's draft length is < 1 or > n.
    BadDraftLen,
    /// The request's temperature is negative, NaN, infinite, or 1/T is not a normal f32: it
    /// overflows (T < 2.9e-39) or is subnormal (T > 8.5e37, where flushing it to 0 would make
    /// masked logits NaN).
    BadTemperature,
    /// The draw rejected a draft token whose residual f32 cannot resolve: the target and draft
    /// rows agree to about 1e-7 (f32 probabilities and normalisers) everywhere but at that
    /// token, whose ratio p / q is nevertheless far from 1; so the draft gave it a probability
    /// of about 1e-6 or less. E.g. the draft and target rows are equal but for the draft token,
    /// which the target masks or scales down: then p(v) == q(v) in f32 for every other v. The
    /// f64 reference still draws a token there; the exact residual is then, to that precision,
    /// the target row without the draft token, so an engine can sample the step's token from it.
    NoOutcome,
    /// A truncation parameter of the request is out of its domain: top_k < 0, top_p outside
    /// (0, 1], min_p outside [0, 1), or NaN (target's or draft's; checked for greedy requests
    /// too, which otherwise ignore truncation).
    BadTruncation,
    /// Tree calls only: the request's tree is malformed (a node count outside 1..=max_nodes, a
    /// parent not before its node, an unknown sibling law, the same token twice among children
    /// drawn without replacement, children drawn from draft rows by a greedy drafter or in a
    /// call without draft logits).
    BadTree,
    /// A code this crate does not know (a kernel/crate mismatch).
    Unknown(i32),
}

impl RequestStatus {
    /// The status of a code written by the kernels.
    pub fn from_code(code: i32) -> Self {
        match code {
            0 => RequestStatus::Ok,
            1 => RequestStatus::NaN,
            2 => RequestStatus::PosInf,
            3 => RequestStatus::AllMasked,
            4 => RequestStatus::TokenOutOfRange,
            5 => RequestStatus::ImpossibleDraftToken,
            6 => RequestStatus::BadDraftLen,
            7 => RequestStatus::BadTemperature,
            8 => RequestStatus::NoOutcome,
            9 => RequestStatus::BadTruncation,
            10 => RequestStatus::BadTree,
            other => RequestStatus::Unknown(other),
        }
    }

    /// A sentence for logs (also what the C ABI's `asps_request_status_string` returns).
    pub fn describe(self) -> &'static str {
        self.describe_c().to_str().expect("the texts are ASCII")
    }

    /// [`RequestStatus::describe`] as a static C string.
    pub(crate) fn describe_c(self) -> &'static std::ffi::CStr {
        match self {
            RequestStatus::Ok => c"ok",
            RequestStatus::NaN => c"a logits row holds NaN",
            RequestStatus::PosInf => c"a logits row holds +inf",
            RequestStatus::AllMasked => c"a logits row is entirely -inf",
            RequestStatus::TokenOutOfRange => c"a draft token id is out of range",
            RequestStatus::ImpossibleDraftToken => c"a draft token has a -inf draft logit",
            RequestStatus::BadDraftLen => c"the draft length is < 1 or > max_draft",
            RequestStatus::BadTemperature => {
                c"the temperature is negative, NaN, infinite or subnormal"
            }
            RequestStatus::NoOutcome => {
                c"a rejected draft token's residual is below f32 resolution (sample from the target)"
            }
            RequestStatus::BadTruncation => c"a top-k, top-p or min-p parameter is out of its domain",
            RequestStatus::BadTree => c"the draft tree is malformed",
            RequestStatus::Unknown(_) => c"unknown request status",
        }
    }
}
