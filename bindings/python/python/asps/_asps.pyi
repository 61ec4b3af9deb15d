# The extension module (bindings/python/src). Not a public API: call asps.verify,
# asps.DeviceArray and asps.reference, which shape and check the arrays these take.
from typing import Optional

_Sampling = tuple[
    float,
    Optional[float],
    Optional[int],
    Optional[float],
    Optional[float],
    Optional[int],
    Optional[float],
    Optional[float],
]
_LawParts = tuple[list[list[float]], float, list[float]]

def step_law_from_logits_rows(
    method: str,
    dtype: str,
    target: bytes,
    draft: bytes,
    tokens: list[int],
    vocab: int,
    sampling: _Sampling,
) -> _LawParts: ...
def step_law_from_prob_rows(
    method: str, target: list[list[float]], draft: list[list[float]], tokens: list[int]
) -> _LawParts: ...
def verify_rows(
    method: str,
    dtype: str,
    target: bytes,
    draft: bytes,
    tokens: list[int],
    vocab: int,
    sampling: _Sampling,
    seed: int,
    offset: int,
) -> tuple[int, int]: ...
def tree_law_rows(
    rule: str,
    sibling_law: str,
    dtype: str,
    parents: list[int],
    tokens: list[int],
    target: bytes,
    draft: Optional[bytes],
    vocab: int,
    sampling: _Sampling,
) -> list[list[float]]: ...
def tree_verify_rows(
    rule: str,
    sibling_law: str,
    dtype: str,
    parents: list[int],
    tokens: list[int],
    target: bytes,
    draft: Optional[bytes],
    vocab: int,
    sampling: _Sampling,
    seed: int,
    offset: int,
) -> tuple[int, int]: ...

# The GPU entry points (bindings/python/src/gpu/mod.rs); asps.verify and asps.verify_tree build
# `common` (what chains and trees share) and `chain` / `tree`.
def gpu_verify(common: dict[str, object], chain: dict[str, object]) -> None: ...
def gpu_verify_tree(common: dict[str, object], tree: dict[str, object]) -> None: ...
def gpu_error(ordinal: int) -> Optional[str]: ...

class DeviceBuffer:
    def __init__(self, device: int, nbytes: int) -> None: ...
    @property
    def ptr(self) -> int: ...
    @property
    def nbytes(self) -> int: ...
    @property
    def device(self) -> int: ...
    def upload(self, data: bytes) -> None: ...
    def download(self) -> bytes: ...
