//! kernels/launch_config.h is the one place the kernels' block sizes are written: the kernels
//! include it for their `__launch_bounds__`, build.rs turns it into the constants the Rust
//! launchers use (src/cuda/launch_config.rs), and nothing else writes them. A block size written
//! twice can drift: a launch above a kernel's bound fails, one below wastes what the bound
//! reserved.

use std::fs;

const ROOT: &str = env!("CARGO_MANIFEST_DIR");

/// (constant, the kernel file whose launch bound it is, the launcher that uses it)
const CONSTANTS: [(&str, &str, &str); 4] = [
    ("VERIFY_THREADS", "verify.cu", "src/cuda/verify/verifier.rs"),
    (
        "SOFTMAX_STATS_THREADS",
        "softmax_stats.cu",
        "src/cuda/softmax_stats.rs",
    ),
    ("SOFTMAX_THREADS", "softmax.cu", "src/cuda/softmax.rs"),
    ("RESIDUAL_THREADS", "residual.cu", "src/cuda/residual.rs"),
];

fn read(path: &str) -> String {
    fs::read_to_string(format!("{ROOT}/{path}")).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// The lines of `text` that are not `//` comments.
fn code(text: &str) -> impl Iterator<Item = &str> {
    text.lines().filter(|l| !l.trim_start().starts_with("//"))
}

#[test]
fn block_sizes_are_written_once() {
    let header = read("kernels/launch_config.h");
    for (name, kernel, launcher) in CONSTANTS {
        let definition = format!("constexpr int {name} =");
        assert!(
            code(&header).any(|l| l.trim_start().starts_with(&definition)),
            "kernels/launch_config.h does not define {name}"
        );
        let source = read(&format!("kernels/{kernel}"));
        assert!(
            source.contains("#include \"launch_config.h\"")
                && source.contains(&format!("__launch_bounds__(asps::{name})")),
            "kernels/{kernel} should take its launch bound {name} from launch_config.h"
        );
        let rust = read(launcher);
        assert!(
            code(&rust).any(|l| l.contains("launch_config::") && l.contains(name)),
            "{launcher} should launch with launch_config::{name}"
        );
    }
    // No other kernel file defines a block size of its own.
    for entry in fs::read_dir(format!("{ROOT}/kernels")).unwrap() {
        let entry = entry.unwrap();
        let name = entry.file_name().into_string().unwrap();
        if name == "launch_config.h" || entry.path().is_dir() {
            continue;
        }
        let text = read(&format!("kernels/{name}"));
        for line in code(&text) {
            assert!(
                !(line.contains("constexpr") && line.contains("_THREADS")),
                "kernels/{name} defines a block size; it belongs in kernels/launch_config.h: {line}"
            );
        }
    }
    // Nor does a launcher.
    for (_, _, launcher) in CONSTANTS {
        let rust = read(launcher);
        for line in code(&rust) {
            let literal_block = line
                .split("one_block_per_row(")
                .skip(1)
                .any(|arg| arg.starts_with(|c: char| c.is_ascii_digit()));
            assert!(
                !line.contains("const THREADS") && !literal_block,
                "{launcher} writes a block size of its own: {line}"
            );
        }
    }
}

/// The C header's limit on the draft length is the kernels' (MAX_DRAFT sizes their shared
/// arrays): one number, checked where it is written twice.
#[test]
fn the_c_header_states_the_kernels_draft_limit() {
    let value = |text: &str, prefix: &str| -> u64 {
        code(text)
            .find_map(|l| l.trim_start().strip_prefix(prefix))
            .and_then(|rest| rest.trim().trim_end_matches(';').trim().parse().ok())
            .unwrap_or_else(|| panic!("no `{prefix}` line"))
    };
    let kernels = value(
        &read("kernels/launch_config.h"),
        "constexpr int MAX_DRAFT =",
    );
    let header = value(&read("include/asps.h"), "#define ASPS_MAX_DRAFT");
    assert_eq!(kernels, header);
    assert_eq!(u64::from(asps::capi::bindings::ASPS_MAX_DRAFT), header);
}
