//! What the decide kernels compile to, read from the PTX of the nvcc that built the crate
//! (build.rs passes its path as ASPS_NVCC; a build without nvcc has no kernels and skips this).
//!
//! In the parallel decide form every block of a sampling request computes the request's plan,
//! and the last block reads the race cells of the rows its own plan names (kernels/verify.cuh,
//! `Plan`), so the plans must agree bit for bit. They do because every block runs the same
//! instructions on the same merged statistics; copies of the plan inlined at two call sites
//! could be optimised, and rounded, differently. So `plan_request` stays one function that
//! each decide kernel calls from each of its call sites. (ptxas keeps the calls: the sm_90 SASS
//! of each decide kernel holds CALL.REL.NOINC to it, read with cuobjdump, which the pinned PyPI
//! packages of CI do not ship.) And it takes values, not the kernel's parameters by reference,
//! which would make every thread copy them into local memory: the decide kernels' PTX holds
//! none.

use std::path::Path;
use std::process::Command;

const ROOT: &str = env!("CARGO_MANIFEST_DIR");

/// Where kernels/verify.cu calls plan_request, per kernel: merge_and_plan, which the lazy walk
/// calls once and decide_parallel twice (a sampling request's blocks; a greedy request's last
/// block), each call inlined: 3 in the decide kernels, 1 in the fused ones (the lazy walk).
const PLAN_CALL_SITES: [(&str, usize); 2] = [("decide", 3), ("fused", 1)];

/// The PTX of kernels/verify.cu for compute_90, compiled as build.rs compiles the kernels; None
/// when the crate was built without nvcc.
fn verify_ptx() -> Option<String> {
    let nvcc = option_env!("ASPS_NVCC")?;
    // One file per process: test runs of several profiles share the target directory.
    let name = format!("verify_compute_90_{}.ptx", std::process::id());
    let out = Path::new(env!("CARGO_TARGET_TMPDIR")).join(name);
    let mut cmd = Command::new(nvcc);
    cmd.args([
        "-ptx",
        "-std=c++17",
        "-O3",
        "-Werror=all-warnings",
        "-arch=compute_90",
        "-I",
    ])
    .arg(Path::new(ROOT).join("kernels"))
    .arg("-o")
    .arg(&out)
    .arg(Path::new(ROOT).join("kernels/verify.cu"));
    if let Some(ccbin) = option_env!("ASPS_NVCC_CCBIN") {
        cmd.arg("-ccbin").arg(ccbin);
    }
    let status = cmd
        .status()
        .unwrap_or_else(|e| panic!("could not run {nvcc}: {e}"));
    assert!(status.success(), "nvcc failed ({status}): {cmd:?}");
    let ptx = std::fs::read_to_string(&out).expect("read the PTX");
    std::fs::remove_file(&out).ok();
    Some(ptx)
}

/// The body of `.entry name`: from its line to the first line that closes a function.
fn entry_body<'a>(ptx: &'a str, name: &str) -> &'a str {
    let start = ptx
        .find(&format!(".entry {name}("))
        .unwrap_or_else(|| panic!("no .entry {name} in the PTX"));
    let len = ptx[start..].find("\n}").expect("an entry's closing brace");
    &ptx[start..start + len]
}

#[test]
fn every_decide_kernel_calls_the_one_plan_function() {
    let Some(ptx) = verify_ptx() else {
        assert_ne!(
            option_env!("ASPS_REQUIRE_KERNELS"),
            Some("1"),
            "ASPS_REQUIRE_KERNELS=1 but the crate was built without nvcc"
        );
        println!("SKIPPED: built without nvcc (no kernels to read)");
        return;
    };
    // A .func definition (not only its prototype): its parameter list, then a body.
    let defined = ptx.split("\n.func ").skip(1).any(|f| {
        let head = f.lines().next().unwrap_or("");
        head.contains("plan_request")
            && f.split(')')
                .nth(1)
                .is_some_and(|rest| rest.trim_start().starts_with('{'))
    });
    assert!(
        defined,
        "plan_request was inlined: no .func of it in the PTX"
    );
    for ((stem, sites), dtype) in PLAN_CALL_SITES
        .into_iter()
        .flat_map(|s| ["f32", "f16", "bf16"].map(|d| (s, d)))
    {
        let kernel = format!("asps_verify_{stem}_{dtype}");
        let body = entry_body(&ptx, &kernel);
        let calls = body.matches("plan_request").count();
        println!("{kernel}: {calls} calls of plan_request");
        assert_eq!(
            calls, sites,
            "{kernel}: some call sites of plan_request inlined it (or the call sites changed: \
             update PLAN_CALL_SITES)"
        );
        assert!(
            !body.contains(".local"),
            "{kernel} uses local memory (a non-inlined function given the kernel's parameters \
             by reference makes every thread copy them there)"
        );
    }
}
