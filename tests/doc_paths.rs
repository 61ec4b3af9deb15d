//! Every file a comment or a document names exists: the repository stands on its own, and a
//! comment that points at a moved or deleted file is a comment that lies. Scans the comments of
//! the sources (Rust, CUDA, C, C++, Python, shell, TOML) and the whole of the Markdown
//! documents for paths (`a/b.ext` with a known extension) and looks each up from the
//! repository's root, from the naming file's folder, and (for the candle engine's files) from
//! engines/candle.

use std::path::{Path, PathBuf};

const ROOT: &str = env!("CARGO_MANIFEST_DIR");

/// The extensions of the files comments point at.
const EXTENSIONS: [&str; 14] = [
    "rs", "cu", "cuh", "h", "c", "cpp", "md", "py", "sh", "inc", "toml", "map", "json", "log",
];

/// Folders not scanned: build outputs, dependencies, and committed logs and results, which
/// quote what a past run printed.
const SKIPPED: [&str; 6] = [
    "target",
    ".git",
    "gpu-logs",
    "emu-logs",
    "results",
    "node_modules",
];

/// Paths that name what a tool makes, not a file of the repository.
const GENERATED: [&str; 1] = [".gpu/run.sh"];

fn files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        if path.is_dir() {
            if !SKIPPED.contains(&name.as_str()) && !name.starts_with(".nvcc") {
                files(&path, out);
            }
        } else {
            out.push(path);
        }
    }
}

/// The text of `path` that is prose: comment lines of sources, all of a Markdown file.
fn prose(path: &Path) -> Option<String> {
    let ext = path.extension().and_then(|e| e.to_str()).unwrap_or("");
    let name = path.file_name()?.to_str()?;
    let hash_comments = matches!(ext, "py" | "sh" | "toml") || name == "run" || name == "gpu";
    let slash_comments = matches!(ext, "rs" | "cu" | "cuh" | "h" | "c" | "cpp" | "inc");
    let text = std::fs::read_to_string(path).ok()?;
    if ext == "md" {
        return Some(text);
    }
    if !hash_comments && !slash_comments {
        return None;
    }
    let comment = |line: &str| {
        let t = line.trim_start();
        if hash_comments {
            t.starts_with('#')
        } else {
            t.starts_with("//") || t.starts_with("/*") || t.starts_with('*')
        }
    };
    Some(
        text.lines()
            .filter(|l| comment(l))
            .collect::<Vec<_>>()
            .join("\n"),
    )
}

/// The path-like words of `text`: a folder, a slash, a name with a known extension (not after
/// a `$`: `$OUT_DIR/x.rs` names a build output).
fn paths(text: &str) -> Vec<String> {
    let word = |c: char| c.is_ascii_alphanumeric() || "_./-".contains(c);
    let mut out = Vec::new();
    let mut rest = text;
    while let Some(start) = rest.find(word) {
        let after_dollar = rest[..start].ends_with('$');
        let len = rest[start..]
            .find(|c: char| !word(c))
            .unwrap_or(rest.len() - start);
        let w = rest[start..start + len].trim_end_matches('.');
        rest = &rest[start + len..];
        if after_dollar {
            continue;
        }
        let Some((stem, ext)) = w.rsplit_once('.') else {
            continue;
        };
        if !w.contains('/') || !EXTENSIONS.contains(&ext) || stem.ends_with('/') {
            continue;
        }
        out.push(w.to_string());
    }
    out
}

#[test]
fn every_named_file_exists() {
    let root = Path::new(ROOT);
    let mut all = Vec::new();
    files(root, &mut all);
    let mut missing = Vec::new();
    for file in &all {
        let Some(text) = prose(file) else {
            continue;
        };
        let rel = file.strip_prefix(root).unwrap();
        for p in paths(&text) {
            if GENERATED.contains(&p.as_str()) || p.starts_with("http") || p.contains("//") {
                continue;
            }
            let mut bases = vec![root.to_path_buf(), file.parent().unwrap().to_path_buf()];
            if rel.starts_with("engines/candle") {
                bases.push(root.join("engines/candle"));
            }
            if !bases.iter().any(|b| b.join(&p).exists()) {
                missing.push(format!("{}: {p}", rel.display()));
            }
        }
    }
    assert!(
        missing.is_empty(),
        "comments and documents name files that do not exist:\n{}",
        missing.join("\n")
    );
}

#[test]
fn the_scanner_finds_paths() {
    let found = paths("see src/cuda/verify/plan.rs, kernels/verify.cu; and docs/design.md.");
    assert_eq!(
        found,
        [
            "src/cuda/verify/plan.rs",
            "kernels/verify.cu",
            "docs/design.md"
        ]
    );
    assert!(paths("a ratio 1/T. or 0.5/1.0, $OUT_DIR/config.rs").is_empty());
}
