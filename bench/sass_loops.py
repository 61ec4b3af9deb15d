#!/usr/bin/env python3
"""Lists the loops of the verification kernels' SASS with the fp64, MUFU and global-load
instructions each holds, to check by eye that no loop over the vocabulary runs fp64 (issue 8:
consumer GPUs run fp64 at 1/64 of fp32).

    python3 bench/sass_loops.py [ARCH]      # ARCH: 90 by default

Needs nvcc (NVCC or PATH) and cuobjdump with nvdisasm beside nvcc or on PATH (PyPI:
nvidia-cuda-cuobjdump, nvidia-cuda-nvdisasm). A loop is the span of a backward branch. The
vocabulary loops are the ones with float exponentials (MUFU.EX2) or logit loads; the loops
over a request's rows, run by one thread, may hold fp64 by design (kernels/verify.cuh).
"""
import os
import re
import shutil
import subprocess
import sys
import tempfile

F64 = re.compile(r"\b(DADD|DMUL|DFMA|DSETP|DMNMX|DSET)\b|F2F\.F64|F2F\.F32\.F64|I2F\.[A-Z0-9.]*F64|F2I\.[A-Z0-9.]*F64")


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


def main():
    arch = sys.argv[1] if len(sys.argv) > 1 else "90"
    funcs, func = {}, None
    for line in sass(arch).splitlines():
        m = re.search(r"Function : (\S+)", line)
        if m:
            func = m.group(1)
            funcs[func] = []
            continue
        m = re.match(r"\s*/\*([0-9a-f]{4,})\*/\s+(.*?);", line)
        if m and func:
            funcs[func].append((int(m.group(1), 16), m.group(2)))
    print(f"sm_{arch}: loop (addresses), instructions, fp64, MUFU.EX2, LDG")
    for name, ins in funcs.items():
        index = {a: i for i, (a, _) in enumerate(ins)}
        total = sum(1 for _, t in ins if F64.search(t))
        print(f"{name}: {len(ins)} instructions, {total} fp64")
        for i, (a, text) in enumerate(ins):
            m = re.search(r"\bBRA\b.*?(0x[0-9a-f]+)", text)
            if not m or int(m.group(1), 16) > a or int(m.group(1), 16) not in index:
                continue
            body = [t for _, t in ins[index[int(m.group(1), 16)]:i + 1]]
            f64 = sum(1 for t in body if F64.search(t))
            ex2 = sum(1 for t in body if "MUFU.EX2" in t)
            ldg = sum(1 for t in body if "LDG" in t)
            print(f"  {int(m.group(1), 16):#07x}-{a:#07x} {len(body):5d} {f64:4d} {ex2:4d} {ldg:4d}")


if __name__ == "__main__":
    main()
