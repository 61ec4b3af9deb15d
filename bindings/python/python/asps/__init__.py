"""asps: exact verification of speculative drafts.

The crate's CUDA kernels verify drafts on the GPU (ASpS, SpS, greedy, draft trees); this
package gives Python the crate's exact f64 CPU reference, :mod:`asps.reference`: the law of a
verification step (what every outcome's probability is, and the expected tokens per step),
one step drawn with the kernels' own noise, and the law of a step over a draft tree, on NumPy
arrays of logits.
"""

from . import reference

__all__ = ["reference"]
