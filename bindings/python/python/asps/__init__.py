"""asps: exact verification of speculative drafts.

* :func:`verify`: the crate's CUDA kernels on the caller's device arrays (torch tensors,
  :class:`DeviceArray`, ``__cuda_array_interface__`` or DLPack objects) and stream: ASpS, SpS
  or greedy over a batch of drafts, with per-request temperature, top-k, top-p and min-p.
* :func:`verify_tree`: the same for a batch of draft trees (Traversal Verification or RRS).
* :mod:`asps.reference`: the crate's exact f64 CPU reference on NumPy arrays: the law of a
  verification step (every outcome's probability, the expected tokens per step), one step
  drawn with the kernels' own noise, and the law of a step over a draft tree.
"""

from . import reference
from .device_array import DeviceArray
from .gpu import RequestStatus, Verified, VerifiedTree, gpu_error, verify, verify_tree

__all__ = ["DeviceArray", "RequestStatus", "Verified", "VerifiedTree", "gpu_error", "reference",
           "verify", "verify_tree"]
