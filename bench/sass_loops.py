#!/usr/bin/env python3
"""The loops of the verification kernels' SASS: what each holds (fp64, float exponentials,
global loads), a check that no vocabulary loop runs fp64, and the instructions per element of
the vocabulary loops (the structure bench's "sass_per_element").

    python3 bench/sass_loops.py [ARCH]                 # every loop of every kernel (ARCH: 90)
    python3 bench/sass_loops.py --check                 # exit 1 if a vocabulary loop holds fp64 (CI)
    python3 bench/sass_loops.py --json                  # instructions per element, as JSON

Needs nvcc (NVCC or PATH) and cuobjdump beside nvcc or on PATH (PyPI: nvidia-cuda-cuobjdump).

A loop is the span of a backward branch, except a divergence fallback: an out-of-line block
(after an unconditional branch, exit or return) of warp-collective instructions
(WARPSYNC.COLLECTIVE, for a shuffle that some lanes reach diverged) that branches back into
the main code; its span covers most of the kernel but runs nothing of it. A vocabulary loop is
a loop that loads from global memory (LDG) or computes a float exponential (MUFU.EX2): fp64
there would run at 1/64 rate on consumer and L4/L40S GPUs. Loops over a request's rows in the
one-thread plan (kernels/verify.cuh, plan_request) hold fp64 by design and load only shared
memory.

sass_per_element: for each kernel and dtype, its vectorised vocabulary loops (128-bit loads
and float exponentials: kernels/common.cuh, for_each_tile) with their instructions over the
elements of one row that an iteration covers (a loop over a target and a draft row counts per
token). Static: every instruction of the loop's span once, rare branches included.
"""
import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile

F64 = re.compile(r"\b(DADD|DMUL|DFMA|DSETP|DMNMX|DSET)\b|F2F\.F64|F2F\.F32\.F64|I2F\.[A-Z0-9.]*F64|F2I\.[A-Z0-9.]*F64")
DTYPE_BYTES = {"f32": 4, "f16": 2, "bf16": 2}
TILE = 16


def sass(arch):
    nvcc = os.environ.get("NVCC") or shutil.which("nvcc")
    if not nvcc:
        sys.exit("nvcc not found (set NVCC)")
    bindir = os.path.dirname(nvcc)
    env = dict(os.environ, PATH=bindir + os.pathsep + os.environ.get("PATH", ""))
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    with tempfile.TemporaryDirectory() as tmp:
        cubin = os.path.join(tmp, "verify.cubin")
        subprocess.run([nvcc, "-cubin", f"-arch=sm_{arch}", "-O3", "-std=c++17",
                        "-I", os.path.join(root, "kernels"),
                        os.path.join(root, "kernels", "verify.cu"), "-o", cubin], check=True)
        return subprocess.run(["cuobjdump", "-sass", cubin], check=True, env=env,
                              capture_output=True, text=True).stdout


def functions(text):
    funcs, func = {}, None
    for line in text.splitlines():
        m = re.search(r"Function : (\S+)", line)
        if m:
            func = m.group(1)
            funcs[func] = []
            continue
        m = re.match(r"\s*/\*([0-9a-f]{4,})\*/\s+(.*?);", line)
        if m and func:
            funcs[func].append((int(m.group(1), 16), m.group(2).strip()))
    return funcs


def unconditional_exit(text):
    return re.match(r"(BRA|EXIT|RET)\b", text) is not None


def loops(ins):
    """(start, end, body) of every loop of a function (module docs)."""
    index = {a: i for i, (a, _) in enumerate(ins)}
    out = []
    for i, (a, text) in enumerate(ins):
        m = re.search(r"\bBRA\b.*?(0x[0-9a-f]+)", text)
        if not m:
            continue
        target = int(m.group(1), 16)
        if target > a or target not in index:
            continue
        # The straight-line block that ends at this branch.
        j = i - 1
        while j >= 0 and not unconditional_exit(ins[j][1]):
            j -= 1
        if any("WARPSYNC.COLLECTIVE" in t for _, t in ins[j + 1:i]) and target < ins[j + 1][0]:
            continue  # a divergence fallback
        out.append((target, a, [t for _, t in ins[index[target]:i + 1]]))
    return out


def is_vocabulary_loop(body):
    return any("LDG" in t or "MUFU.EX2" in t for t in body)


def tile_loops(name, ins):
    """The vectorised vocabulary loops of a kernel: loops with 128-bit global loads and float
    exponentials. A loop reads as many rows as its 128-bit loads have base registers (a tile of
    one row is loaded from [R] and [R+0x10]; a target and a draft tile from two bases), and
    counts per element of one row (per token: a pair of rows makes one token's weight)."""
    dtype = name.rsplit("_", 1)[-1]
    per_load = 16 // DTYPE_BYTES[dtype]
    out = []
    found = loops(ins)
    for start, end, body in found:
        if any(start <= s2 and e2 <= end and (s2, e2) != (start, end) for s2, e2, _ in found):
            continue  # an outer loop (the lazy form's walk over rows): its inner loops count
        wide = [re.search(r"\[(R\d+)\.64", t) for t in body if re.search(r"\bLDG\.E\.128\b", t)]
        exps = sum(1 for t in body if "MUFU.EX2" in t)
        if not wide or exps == 0:
            continue
        rows = len({m.group(1) for m in wide if m}) or 1
        elements = len(wide) * per_load // rows
        out.append({"span": f"{start:#x}-{end:#x}", "instructions": len(body), "rows": rows,
                    "elements": elements, "mufu_ex2": exps,
                    "sass_per_element": round(len(body) / elements, 2)})
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("arch", nargs="?", default="90")
    ap.add_argument("--check", action="store_true")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    funcs = functions(sass(args.arch))
    if args.json:
        report = {name: tile_loops(name, ins) for name, ins in funcs.items()
                  if name.startswith("asps_verify_")}
        # One loop per line (benches/structure.rs prints them as they are).
        kernels = ",\n".join(
            f" {json.dumps(name)}: [" + ",".join("\n  " + json.dumps(l) for l in loops_) + "]"
            for name, loops_ in report.items())
        print(f'{{"arch": "sm_{args.arch}", "tile": {TILE}, "kernels": {{\n{kernels}}}}}')
        return
    bad = []
    print(f"sm_{args.arch}: loop (addresses), instructions, fp64, MUFU.EX2, LDG")
    for name, ins in funcs.items():
        total = sum(1 for _, t in ins if F64.search(t))
        print(f"{name}: {len(ins)} instructions, {total} fp64")
        for start, end, body in loops(ins):
            f64 = sum(1 for t in body if F64.search(t))
            ex2 = sum(1 for t in body if "MUFU.EX2" in t)
            ldg = sum(1 for t in body if "LDG" in t)
            vocab = is_vocabulary_loop(body)
            print(f"  {start:#07x}-{end:#07x} {len(body):5d} {f64:4d} {ex2:4d} {ldg:4d}"
                  + ("  vocabulary" if vocab else ""))
            if vocab and f64 and name.startswith("asps_verify_"):
                bad.append(f"{name} {start:#x}-{end:#x}: {f64} fp64")
    if args.check:
        if bad:
            print("fp64 in a vocabulary loop of the verify kernels:\n  " + "\n  ".join(bad))
            sys.exit(1)
        print("no fp64 in any vocabulary loop of the verify kernels")


if __name__ == "__main__":
    main()
