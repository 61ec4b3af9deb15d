#!/usr/bin/env python3
"""Baselines for ASpS verification, timed on the GPU in the same run as ours.

(a) "paper":    ASpS as the paper's reference code does it: a Python loop over the rows in
                log space (one softmax per row, scalars pulled to the host), then one
                multinomial draw over all outcomes.
(b) "eager":    vectorised PyTorch ASpS: softmax to fp32 probabilities, the closed form of
                docs/design.md over the whole batch, one multinomial draw per request.
    "compiled": the same function under torch.compile.
    "eager truncated", "compiled truncated": the same after truncating every target and draft
                row as an engine would before such a sampler (sort-based, as vLLM does), by the
                JSON's "truncation" (top-k, top-p, min-p: the one our `verify_asps_truncated`
                entries used), docs/design.md's rules.
(c) ours:       the crate's ASpS and SpS kernels, read from the JSON that `cargo bench --bench gpu`
                (or .gpu/benches/gpu --bench on the GPU machine) wrote in the same session.

    python3 bench/baselines.py --ours bench/results/gpu-<device>-<time>.json [--quick]

Prints one table: per shape, the memory floor and every contender's median GPU time (CUDA
events), and the speed-ups of our ASpS over (a) and (b). Needs PyTorch with CUDA.
"""
import argparse
import json
import math
import sys

import torch

VOCABS = [32000, 128256, 151936]
DRAFTS = [1, 4, 8, 16]
BATCHES = [1, 8, 64, 256]
TARGETS = [(64, 8, 128256), (1, 4, 32000)]


def paper_loop_asps(target, draft, tokens):
    """(a) One request at a time, one row at a time, in log space; one multinomial draw."""
    batch, n = tokens.shape
    out = []
    for b in range(batch):
        log_s = 0.0
        residuals, log_ts = [], []
        for r in range(n):
            lp = torch.log_softmax(target[b, r].float(), -1)
            lq = torch.log_softmax(draft[b, r].float(), -1)
            x = int(tokens[b, r])
            s_prev = math.exp(log_s)
            p, q = lp.exp(), lq.exp()
            res = (s_prev * p - q).clamp_min(0)
            res[x] = 0
            a = float((q - s_prev * p).clamp_min(0).sum())
            log_s = min(0.0, log_s + float(lp[x] - lq[x]))
            one_minus_s = -math.expm1(log_s)
            log_ts.append(0.0 if a == 0 else (math.log(one_minus_s) if one_minus_s > 0 else -math.inf) - math.log(a))
            residuals.append(res)
        weights = []
        log_big_t = 0.0
        for r in reversed(range(n)):
            log_big_t += log_ts[r]
            weights.append(math.exp(log_big_t) * residuals[r] if log_big_t > -math.inf else torch.zeros_like(residuals[r]))
        weights.reverse()
        bonus = math.exp(log_s) * torch.softmax(target[b, n].float(), -1)
        w = torch.cat(weights + [bonus])
        out.append(torch.multinomial(w, 1))
    return torch.cat(out)


def vectorised_asps(target, draft, tokens):
    """(b) The whole batch at once: fp32 probabilities, the closed form, one draw per request."""
    batch, n = tokens.shape
    lp = torch.log_softmax(target.float(), -1)  # [B, n+1, V]
    lq = torch.log_softmax(draft.float(), -1)  # [B, n, V]
    idx = tokens.long().unsqueeze(-1)
    log_rho = lp[:, :n].gather(-1, idx).squeeze(-1) - lq.gather(-1, idx).squeeze(-1)
    c = torch.cat([torch.zeros_like(log_rho[:, :1]), torch.cumsum(log_rho, 1)], 1)
    log_s = c - torch.cummax(c, 1).values  # [B, n+1]
    s_prev = log_s[:, :n].exp().unsqueeze(-1)
    p, q = lp[:, :n].exp(), lq.exp()
    res = (s_prev * p - q).clamp_min(0).scatter(-1, idx, 0.0)
    a = (q - s_prev * p).clamp_min(0).sum(-1)
    log_t = torch.where(a > 0, torch.log(-torch.expm1(log_s[:, 1:])) - torch.log(a), torch.zeros_like(a))
    log_big_t = torch.flip(torch.cumsum(torch.flip(log_t, [1]), 1), [1])
    w = torch.cat([(log_big_t.exp().unsqueeze(-1) * res).flatten(1), log_s[:, n:].exp() * lp[:, n].exp()], 1)
    return torch.multinomial(w, 1)


def truncate(logits, top_k, top_p, min_p):
    """docs/design.md's truncation of each row (T = 1): top-k, then top-p, then min-p, ties at each
    boundary kept; dropped entries become -inf. Sort-based, as engines do it outside a kernel."""
    x = logits.float()
    kth = torch.topk(x, top_k, dim=-1).values[..., -1:]
    x = x.masked_fill(x < kth, -math.inf)
    w = torch.softmax(x, -1)
    desc = torch.sort(w, dim=-1, descending=True).values
    # tau: the value at the first sorted position where the running mass reaches top_p.
    first = (torch.cumsum(desc, -1) < top_p).sum(-1, keepdim=True).clamp(max=x.shape[-1] - 1)
    x = x.masked_fill(w < desc.gather(-1, first), -math.inf)
    w = torch.softmax(x, -1)
    return x.masked_fill(w < min_p * w.amax(-1, keepdim=True), -math.inf)


def truncated_asps(target, draft, tokens, truncation):
    """(b) with truncation: both models' rows truncated by `truncation` (top-k, top-p, min-p),
    then the vectorised closed form."""
    return vectorised_asps(truncate(target, *truncation), truncate(draft, *truncation), tokens)


def time_gpu(fn, reps=20, warmup=3):
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(reps):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        fn()
        end.record()
        torch.cuda.synchronize()
        times.append(start.elapsed_time(end) * 1e3)
    times.sort()
    return times[len(times) // 2]


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--ours", required=True, help="JSON written by the gpu bench in this session")
    ap.add_argument("--quick", action="store_true", help="the two target shapes only")
    ap.add_argument("--paper-max-rows", type=int, default=1024, help="skip (a) above B*n rows (minutes per call)")
    args = ap.parse_args()
    if not torch.cuda.is_available():
        print("SKIPPED baselines: no CUDA device for PyTorch", file=sys.stderr)
        return 0
    with open(args.ours) as f:
        ours = json.load(f)
    index = {(c["entry"], c["dtype"], c["batch"], c["n"], c["vocab"], c["graph"]): c for c in ours["cases"]}
    # The truncation our `_truncated` entries used (benches/gpu.rs, TRUNCATED); absent from JSON
    # written before the bench recorded it, whose truncated entries are then not compared.
    t = ours.get("truncation")
    truncation = (t["top_k"], t["top_p"], t["min_p"]) if t else None
    if truncation is None and any(c["entry"].endswith("_truncated") for c in ours["cases"]):
        print("note: this JSON does not say how its _truncated entries truncated; they are not compared",
              file=sys.stderr)
    compiled = torch.compile(vectorised_asps)
    compiled_truncated = torch.compile(truncated_asps)
    shapes = TARGETS if args.quick else [(b, n, v) for v in VOCABS for n in DRAFTS for b in BATCHES]
    print(f"device: {torch.cuda.get_device_name()} (ours: {ours['device']}, commit {ours['crate_commit'][:10]})")
    print(f"torch {torch.__version__}; read bandwidth {ours['read_bandwidth_gb_s']} GB/s; times are medians in us")
    header = ["dtype", "B", "n", "V", "floor", "ours ASpS", "ours SpS", "(a) paper", "(b) eager", "(b) compiled", "vs (a)", "vs (b)"]
    print(" | ".join(header))
    truncated = []
    for dtype_name, dtype in [("bf16", torch.bfloat16), ("f32", torch.float32)]:
        for b, n, v in shapes:
            key = lambda entry: (entry, dtype_name, b, n, v, False)
            if key("verify_asps") not in index:
                continue
            a_ours, s_ours = index[key("verify_asps")], index[key("verify_sps")]
            gen = torch.Generator(device="cuda").manual_seed(0)
            target = torch.randn(b, n + 1, v, device="cuda", generator=gen).to(dtype)
            draft = (target[:, :n].float() + 0.25 * torch.randn(b, n, v, device="cuda", generator=gen)).to(dtype)
            tokens = draft.float().argmax(-1).int()
            paper = time_gpu(lambda: paper_loop_asps(target, draft, tokens), reps=3, warmup=1) if b * n <= args.paper_max_rows else math.nan
            eager = time_gpu(lambda: vectorised_asps(target, draft, tokens))
            comp = time_gpu(lambda: compiled(target, draft, tokens))
            best_b = min(eager, comp)
            row = [dtype_name, b, n, v, f"{a_ours['floor_us']:.1f}", f"{a_ours['median_us']:.1f}", f"{s_ours['median_us']:.1f}",
                   f"{paper:.0f}", f"{eager:.1f}", f"{comp:.1f}", f"{paper / a_ours['median_us']:.0f}x", f"{best_b / a_ours['median_us']:.1f}x"]
            print(" | ".join(str(x) for x in row), flush=True)
            if truncation is not None and key("verify_asps_truncated") in index:
                ours_t = index[key("verify_asps_truncated")]["median_us"]
                eager_t = time_gpu(lambda: truncated_asps(target, draft, tokens, truncation))
                comp_t = time_gpu(lambda: compiled_truncated(target, draft, tokens, truncation))
                truncated.append([dtype_name, b, n, v, f"{ours_t:.1f}", f"{eager_t:.1f}", f"{comp_t:.1f}",
                                  f"{min(eager_t, comp_t) / ours_t:.1f}x"])
            del target, draft
            torch.cuda.empty_cache()
    if truncated:
        print(f"with truncation (top-k, top-p, min-p = {truncation} on target and draft rows):")
        print(" | ".join(["dtype", "B", "n", "V", "ours ASpS", "(b) eager", "(b) compiled", "vs (b)"]))
        for row in truncated:
            print(" | ".join(str(x) for x in row), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
