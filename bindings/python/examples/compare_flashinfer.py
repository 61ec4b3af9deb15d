"""asps.verify beside FlashInfer's chain_speculative_sampling on the same logits, on one GPU.

FlashInfer takes probabilities, so its timing includes the two softmaxes it needs (what an
engine calling it from logits pays); asps takes the logits. Both run on torch's current stream
and are timed with CUDA events over many calls. The mean tokens per step is printed beside each
time: SpS is the same algorithm as FlashInfer's (their means agree up to sampling noise); ASpS
keeps at least as many tokens in expectation.

    python bindings/python/examples/compare_flashinfer.py --batch 32 --draft 4 --vocab 128256

Needs torch with CUDA; flashinfer is optional (without it only asps is timed).
"""

import argparse

import torch

import asps


def timed(fn, iters):
    """Mean microseconds per call of fn over iters calls, after a warm-up."""
    for _ in range(10):
        fn()
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    start.record()
    for _ in range(iters):
        fn()
    end.record()
    end.synchronize()
    return start.elapsed_time(end) * 1000 / iters


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--draft", type=int, default=4)
    ap.add_argument("--vocab", type=int, default=128256)
    ap.add_argument("--dtype", default="bfloat16", choices=["float32", "float16", "bfloat16"])
    ap.add_argument("--temperature", type=float, default=1.0)
    ap.add_argument("--iters", type=int, default=200)
    a = ap.parse_args()
    b, n, v, temp = a.batch, a.draft, a.vocab, a.temperature
    dtype = getattr(torch, a.dtype)
    torch.manual_seed(0)
    # A draft close to the target, so that drafts are often kept.
    target = (3 * torch.randn(b, n + 1, v, device="cuda")).to(dtype)
    draft = (target[:, :n].float() + torch.randn(b, n, v, device="cuda")).to(dtype)
    draft_probs = torch.softmax(draft.float() / temp, dim=-1)
    tokens = torch.multinomial(draft_probs.view(-1, v), 1).view(b, n).int()
    offsets = torch.zeros(b, device="cuda", dtype=torch.int64)

    def ours(method):
        return lambda: asps.verify(target, draft, tokens, method=method, temperature=temp,
                                   seed=1234, offset=offsets)

    rows = []
    for method in ("asps", "sps"):
        out = ours(method)()
        assert (out.status == 0).all(), out.status
        emitted = out.num_emitted.float().mean().item()
        rows.append((f"asps.verify (method={method}, from logits)", timed(ours(method), a.iters),
                     emitted))
    try:
        import flashinfer

        def theirs():
            p = torch.softmax(target.float() / temp, dim=-1)
            q = torch.softmax(draft.float() / temp, dim=-1)
            return flashinfer.sampling.chain_speculative_sampling(q, tokens, p)

        out = theirs()
        emitted = ((out >= 0).sum(dim=1)).float().mean().item()
        rows.append(("flashinfer chain_speculative_sampling (+ 2 softmax)",
                     timed(theirs, a.iters), emitted))
    except ImportError as e:
        print(f"flashinfer not importable ({e}): asps only")
    print(f"{torch.cuda.get_device_name()}, B = {b}, n = {n}, V = {v}, {a.dtype}, T = {temp}")
    for name, us, emitted in rows:
        print(f"{name:55s} {us:9.1f} us/call  {emitted:.3f} tokens/step")


if __name__ == "__main__":
    main()
