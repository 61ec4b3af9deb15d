//! Parameter and result types shared by the CPU reference and the CUDA front.

/// A verification rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Method {
    /// Accelerated Speculative Sampling (Hu & Huang, ICML 2024): tree-wise maximal coupling
    /// over whole continuations. Lossless; accepts at least as many tokens as SpS on average.
    Asps,
    /// Token-wise speculative sampling (Leviathan et al. 2023, Chen et al. 2023). Lossless.
    Sps,
    /// Temperature 0: keep draft tokens while each is the target's argmax, then emit the
    /// target's argmax. Ties go to the lowest token id.
    Greedy,
}

impl Method {
    /// All three rules, for iteration in tests and tools.
    pub const ALL: [Method; 3] = [Method::Asps, Method::Sps, Method::Greedy];
}

/// The outcome of one verification step: the first `accepted` draft tokens are kept, then
/// `token` is emitted (a correction after a rejection, or the bonus after a full accept).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Outcome {
    /// How many draft tokens are kept (0..=n).
    pub accepted: usize,
    /// The token emitted after them.
    pub token: u32,
}

impl Outcome {
    /// The number of tokens this step emits: `accepted + 1`.
    pub fn num_emitted(&self) -> usize {
        self.accepted + 1
    }

    /// The emitted tokens: `draft[..accepted]` followed by `token`.
    pub fn emitted(&self, draft: &[u32]) -> Vec<u32> {
        let mut out = draft[..self.accepted.min(draft.len())].to_vec();
        out.push(self.token);
        out
    }
}
