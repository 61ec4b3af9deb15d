//! Compiles kernels/*.cu into one fatbin (SASS per architecture plus PTX for the newest) that
//! src/cuda/module.rs embeds, and kernels/testing/*.cu (test and bench kernels) into a second,
//! which only the `testing` feature's code loads. Without nvcc the crate still builds, without
//! kernels, and says so; `ASPS_REQUIRE_KERNELS=1` makes a missing nvcc a build error. With
//! `ASPS_EMULATED_DEVICE=1` (set by tests/emu/gpu) it embeds the emulated device's images
//! instead, which hold no code and run nowhere but on the emulated device of tests/emu; nvcc is
//! then neither needed nor used.

use std::env;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

/// SASS for these compute capabilities, PTX for the newest (so newer GPUs JIT it).
const DEFAULT_ARCHS: &[u32] = &[80, 86, 89, 90, 100, 120];

/// The constants of kernels/launch_config.h that the Rust launchers use.
const LAUNCH_CONSTANTS: &[&str] = &[
    "VERIFY_THREADS",
    "SOFTMAX_STATS_THREADS",
    "SOFTMAX_THREADS",
    "RESIDUAL_THREADS",
    "MAX_SPLIT",
    "MAX_DRAFT",
];

fn main() {
    generate_launch_config();
    build_c_smoke();
    build_kernel_emulator();
    embed_git_commit();
    println!("cargo::rustc-check-cfg=cfg(asps_kernels)");
    println!("cargo::rustc-check-cfg=cfg(asps_emulated_device)");
    println!("cargo::rerun-if-changed=kernels");
    println!("cargo::rerun-if-changed=kernels/testing");
    println!("cargo::rerun-if-changed=include/asps.h");
    println!("cargo::rerun-if-changed=build.rs");
    for var in [
        "NVCC",
        "CUDA_HOME",
        "CUDA_PATH",
        "PATH",
        "ASPS_CUDA_ARCHS",
        "ASPS_REQUIRE_KERNELS",
        "NVCC_CCBIN",
        "ASPS_EMULATED_DEVICE",
    ] {
        println!("cargo::rerun-if-env-changed={var}");
    }
    if env::var("ASPS_EMULATED_DEVICE").is_ok_and(|v| v == "1") {
        embed_emulated_device_image();
        return;
    }

    let require = env::var("ASPS_REQUIRE_KERNELS").is_ok_and(|v| v == "1");
    let Some(nvcc) = find_nvcc() else {
        if require {
            panic!(
                "ASPS_REQUIRE_KERNELS=1 but nvcc was not found (looked at NVCC, CUDA_HOME/bin, \
                 CUDA_PATH/bin and PATH)"
            );
        }
        println!(
            "cargo::warning=asps: nvcc not found (NVCC, CUDA_HOME, CUDA_PATH, PATH); building \
             without CUDA kernels: GPU entry points will return Error::KernelsMissing"
        );
        return;
    };

    // For tests/kernel_ptx.rs, which reads the PTX this nvcc (and host compiler) makes of the
    // kernels.
    println!("cargo::rustc-env=ASPS_NVCC={}", nvcc.display());
    if let Ok(ccbin) = env::var("NVCC_CCBIN") {
        println!("cargo::rustc-env=ASPS_NVCC_CCBIN={ccbin}");
    }
    let archs = archs();
    let manifest = PathBuf::from(env::var("CARGO_MANIFEST_DIR").unwrap());
    let kernel_dir = manifest.join("kernels");
    let out_dir = PathBuf::from(env::var("OUT_DIR").unwrap());
    // The production image (kernels/*.cu) and the test and bench kernels' (kernels/testing/*.cu,
    // loaded only by the `testing` feature's code), each one translation unit.
    for (sources, name) in [
        (kernel_dir.clone(), "asps_kernels"),
        (kernel_dir.join("testing"), "asps_test_kernels"),
    ] {
        compile_fatbin(&nvcc, &kernel_dir, &sources, &out_dir.join(name), &archs);
    }
    emit_kernel_cfg(&archs);
}

/// Compiles every .cu file of `sources` (one translation unit, headers from `kernel_dir`) into
/// `{stem}.fatbin`. A fatbin depends only on the sources, headers, architectures and nvcc
/// (`cache_key`), not on the cargo profile or features, so it is kept once per key in the
/// target directory's `asps-kernels/` and copied from there: the dev, release and bench
/// profiles, and a dependent crate's feature set, do not each compile the same kernels again
/// (minutes per compile).
fn compile_fatbin(nvcc: &Path, kernel_dir: &Path, sources: &Path, stem: &Path, archs: &[u32]) {
    let unity = stem.with_extension("cu");
    let fatbin = stem.with_extension("fatbin");
    let unity_text = unity_source(sources);
    fs::write(&unity, &unity_text).expect("write the unity kernel source");
    let key = format!("{unity_text}\n{}", cache_key(kernel_dir, archs, nvcc));
    let cache = shared_cache_dir(stem).join(format!("{:016x}", fnv1a(key.as_bytes())));
    let (cached, cached_key) = (cache.with_extension("fatbin"), cache.with_extension("key"));
    if cached.exists() && fs::read_to_string(&cached_key).is_ok_and(|k| k == key) {
        fs::copy(&cached, &fatbin).expect("copy the cached fatbin");
        return;
    }
    let mut cmd = Command::new(nvcc);
    cmd.arg("-fatbin")
        .arg("-std=c++17")
        .arg("-O3")
        .arg("-lineinfo")
        .arg("-Werror=all-warnings")
        // One thread per architecture, up to the cores cargo gives this build script.
        .arg(format!(
            "--threads={}",
            env::var("NUM_JOBS").unwrap_or_else(|_| "1".into())
        ))
        .arg("-I")
        .arg(kernel_dir)
        .arg("-o")
        .arg(&fatbin)
        .arg(&unity);
    if let Ok(ccbin) = env::var("NVCC_CCBIN") {
        cmd.arg("-ccbin").arg(ccbin);
    }
    let newest = *archs.iter().max().unwrap();
    for &a in archs {
        let code = if a == newest {
            format!("[sm_{a},compute_{a}]")
        } else {
            format!("sm_{a}")
        };
        cmd.arg(format!("-gencode=arch=compute_{a},code={code}"));
    }
    let status = cmd
        .status()
        .unwrap_or_else(|e| panic!("could not run {}: {e}", nvcc.display()));
    if !status.success() {
        panic!("nvcc failed ({status}) compiling the kernels: {cmd:?}");
    }
    // Into the cache by rename, so that a build running beside this one never reads half a file.
    let dir = cache.parent().unwrap();
    if fs::create_dir_all(dir).is_ok() {
        let tmp = dir.join(format!(
            "{}.{}.tmp",
            fnv1a(key.as_bytes()),
            std::process::id()
        ));
        let stored = fs::copy(&fatbin, &tmp).is_ok()
            && fs::rename(&tmp, &cached).is_ok()
            && fs::write(&cached_key, &key).is_ok();
        if !stored {
            let _ = fs::remove_file(&tmp);
        }
    }
}

/// `asps-kernels/` beside the profile folders of the target directory: OUT_DIR is
/// `<target>/<profile>/build/<package>-<hash>/out` (with `<target>/<triple>` for
/// `--target`), so two levels above its `build` ancestor; OUT_DIR itself when it is not.
fn shared_cache_dir(stem: &Path) -> PathBuf {
    let out_dir = stem.parent().unwrap();
    let root = out_dir
        .ancestors()
        .find(|d| d.file_name().is_some_and(|n| n == "build"))
        .and_then(|build| build.parent()?.parent())
        .unwrap_or(out_dir);
    root.join("asps-kernels")
}

/// 64-bit FNV-1a: a file name for a cache key (the key itself is stored and compared).
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// Writes $OUT_DIR/launch_config.rs (included by src/cuda/launch_config.rs): every
/// `constexpr int NAME = VALUE;` line of kernels/launch_config.h as a `pub(crate) const NAME:
/// u32`, so that the kernels' block sizes are written once. Panics (fails the build) on a
/// `constexpr` line it cannot read, a constant of [`LAUNCH_CONSTANTS`] missing, a name defined
/// twice, a `*_THREADS` value that is not a multiple of 32 in 32..=1024, or a 0.
fn generate_launch_config() {
    let path = "kernels/launch_config.h";
    let text = fs::read_to_string(path).unwrap_or_else(|e| panic!("read {path}: {e}"));
    let mut constants: Vec<(String, u32)> = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let Some(rest) = line.trim().strip_prefix("constexpr") else {
            continue;
        };
        let parsed = rest
            .trim()
            .strip_prefix("int ")
            .and_then(|r| r.split_once(';'))
            .and_then(|(def, _comment)| def.split_once('='))
            .and_then(|(name, value)| Some((name.trim(), value.trim().parse::<u32>().ok()?)));
        let Some((name, value)) = parsed else {
            panic!(
                "{path}:{}: cannot read `{}`; write `constexpr int NAME = VALUE;`",
                i + 1,
                line.trim()
            );
        };
        assert!(
            !name.is_empty() && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'),
            "{path}:{}: `{name}` is not a plain name",
            i + 1
        );
        assert!(
            !name.ends_with("_THREADS") || ((32..=1024).contains(&value) && value % 32 == 0),
            "{path}:{}: {name} = {value}; threads per block must be a multiple of 32 in 32..=1024",
            i + 1
        );
        assert!(value > 0, "{path}:{}: {name} = 0", i + 1);
        assert!(
            constants.iter().all(|(n, _)| n != name),
            "{path}:{}: {name} is defined twice",
            i + 1
        );
        constants.push((name.to_string(), value));
    }
    for want in LAUNCH_CONSTANTS {
        assert!(
            constants.iter().any(|(n, _)| n == want),
            "{path} does not define `constexpr int {want} = ...;`, which the Rust launchers use"
        );
    }
    let mut out =
        String::from("// Generated by build.rs from kernels/launch_config.h; do not edit.\n");
    for (name, value) in &constants {
        out.push_str(&format!(
            "/// `{name}` of kernels/launch_config.h.\npub(crate) const {name}: u32 = {value};\n"
        ));
    }
    let out_dir = PathBuf::from(env::var("OUT_DIR").unwrap());
    fs::write(out_dir.join("launch_config.rs"), out).expect("write launch_config.rs");
}

/// The emulated device's images (tests/emu/device/module.cpp accepts them; a GPU driver refuses
/// them, and so does src/cuda/module.rs on any device but the emulated one): the production
/// kernels' and the test kernels'. Each names what it is for whoever finds it in a binary, and
/// which of the emulated device's kernels it holds.
fn embed_emulated_device_image() {
    let out_dir = PathBuf::from(env::var("OUT_DIR").unwrap());
    for (set, file) in [
        ("verification", "asps_emulated_device.image"),
        ("testing", "asps_emulated_device_testing.image"),
    ] {
        let image = format!(
            "ASPS-EMULATED-DEVICE-IMAGE v1 kernels={set}: no CUDA code; this build of asps runs \
             only on the emulated device of tests/emu (ASPS_EMULATED_DEVICE=1)\0"
        );
        fs::write(out_dir.join(file), image).expect("write the emulated device image");
    }
    println!("cargo::rustc-cfg=asps_emulated_device");
}

fn emit_kernel_cfg(archs: &[u32]) {
    let list: Vec<String> = archs.iter().map(u32::to_string).collect();
    println!("cargo::rustc-env=ASPS_KERNEL_ARCHS={}", list.join(","));
    println!("cargo::rustc-cfg=asps_kernels");
}

/// Everything a fatbin depends on: the kernel sources and headers (kernels/, kernels/testing/,
/// include/asps.h), the architectures, nvcc and its host compiler.
fn cache_key(kernel_dir: &Path, archs: &[u32], nvcc: &Path) -> String {
    let mut key = format!(
        "archs={archs:?} nvcc={} ccbin={:?}\n",
        nvcc.display(),
        env::var("NVCC_CCBIN").ok()
    );
    let header = kernel_dir.join("../include/asps.h");
    let files = kernel_files(kernel_dir)
        .into_iter()
        .chain(kernel_files(&kernel_dir.join("testing")))
        .chain([header]);
    for f in files {
        key.push_str(&format!("== {}\n", f.display()));
        key.push_str(&fs::read_to_string(&f).unwrap_or_default());
    }
    key
}

/// ASPS_GIT_COMMIT: the commit the crate was built from ("unknown" outside a git checkout), for
/// the benches' result files.
fn embed_git_commit() {
    let commit = Command::new("git")
        .args(["rev-parse", "HEAD"])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_else(|| "unknown".into());
    println!("cargo::rustc-env=ASPS_GIT_COMMIT={commit}");
    if let Ok(head) = fs::read_to_string(".git/HEAD") {
        println!("cargo::rerun-if-changed=.git/HEAD");
        if let Some(reference) = head.strip_prefix("ref: ") {
            println!("cargo::rerun-if-changed=.git/{}", reference.trim());
        }
    }
}

/// Compiles tests/c/verify_smoke.c (a C program against include/asps.h) into a static archive
/// that only test binaries link: the c_abi test calls it. An archive member is pulled in only
/// where its symbol is referenced, so other tests are untouched.
fn build_c_smoke() {
    let source = "tests/c/verify_smoke.c";
    println!("cargo::rerun-if-changed={source}");
    println!("cargo::rerun-if-changed=include/asps.h");
    if !Path::new(source).exists() {
        return; // a packaged crate without its tests
    }
    cc::Build::new()
        .file(source)
        .include("include")
        .warnings(true)
        .extra_warnings(true)
        .warnings_into_errors(true)
        .cargo_metadata(false)
        .compile("asps_c_smoke");
    let out_dir = PathBuf::from(env::var("OUT_DIR").unwrap());
    let archive = out_dir.join("libasps_c_smoke.a");
    println!("cargo::rustc-link-arg-tests={}", archive.display());
}

/// Compiles the verification kernels for the host with the CPU emulator of tests/emu (C++20
/// threads and barriers), into an archive that only test binaries link: the emu_verify test
/// runs the kernels' code against the reference on machines without a GPU.
fn build_kernel_emulator() {
    let source = "tests/emu/kernel_emu.cpp";
    println!("cargo::rerun-if-changed=tests/emu");
    if !Path::new(source).exists() {
        return;
    }
    cc::Build::new()
        .cpp(true)
        .std("c++20")
        .file(source)
        .file("tests/emu/emu_runtime.cpp")
        .file("tests/emu/broken_kernels.cpp")
        .include("tests/emu/include")
        .include("kernels")
        .flag_if_supported("-Wno-unknown-pragmas") // #pragma unroll is for nvcc
        // Its context switch is not shadow-stack aware.
        .flag_if_supported("-fcf-protection=none")
        .opt_level(2)
        .cargo_metadata(false)
        .compile("asps_kernel_emu");
    let out_dir = PathBuf::from(env::var("OUT_DIR").unwrap());
    let archive = out_dir.join("libasps_kernel_emu.a");
    println!("cargo::rustc-link-arg-tests={}", archive.display());
    println!("cargo::rustc-link-arg-tests=-lstdc++");
}

/// nvcc from NVCC, CUDA_HOME/bin, CUDA_PATH/bin, then PATH.
fn find_nvcc() -> Option<PathBuf> {
    let exe = if cfg!(windows) { "nvcc.exe" } else { "nvcc" };
    if let Some(p) = env::var_os("NVCC") {
        let p = PathBuf::from(p);
        return if p.is_file() {
            Some(p)
        } else {
            panic!("NVCC={} is not a file", p.display())
        };
    }
    let homes = ["CUDA_HOME", "CUDA_PATH"]
        .into_iter()
        .filter_map(env::var_os)
        .map(|h| PathBuf::from(h).join("bin"));
    let path = env::var_os("PATH")
        .map(|p| env::split_paths(&p).collect::<Vec<_>>())
        .unwrap_or_default();
    homes
        .chain(path)
        .map(|dir| dir.join(exe))
        .find(|p| p.is_file())
}

/// Compute capabilities from ASPS_CUDA_ARCHS ("80,90" or "80;90"; "sm_" prefixes allowed).
fn archs() -> Vec<u32> {
    let Ok(spec) = env::var("ASPS_CUDA_ARCHS") else {
        return DEFAULT_ARCHS.to_vec();
    };
    let archs: Vec<u32> = spec
        .split([',', ';', ' '])
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| {
            let digits = s.trim_start_matches("sm_").trim_start_matches("compute_");
            digits
                .parse()
                .unwrap_or_else(|_| panic!("ASPS_CUDA_ARCHS: `{s}` is not a compute capability"))
        })
        .collect();
    assert!(!archs.is_empty(), "ASPS_CUDA_ARCHS is empty");
    archs
}

/// Every file in `dir` (not its subfolders), sorted.
fn kernel_files(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("read {}: {e}", dir.display()))
        .map(|e| e.expect("read a kernel folder").path())
        .filter(|p| p.is_file())
        .collect();
    files.sort();
    files
}

/// One translation unit that includes every .cu file of `dir`, so that nvcc makes one fatbin.
fn unity_source(dir: &Path) -> String {
    let files: Vec<PathBuf> = kernel_files(dir)
        .into_iter()
        .filter(|p| p.extension().is_some_and(|e| e == "cu"))
        .collect();
    assert!(!files.is_empty(), "{} holds no .cu file", dir.display());
    files
        .iter()
        .map(|f| format!("#include \"{}\"\n", f.display()))
        .collect()
}
