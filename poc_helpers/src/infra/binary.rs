//! Finding the `surreal` server binary (and, with the same code, the lab's `storage-node`).
//!
//! Setup (`scripts/get-server.sh`) chooses the server: the caller's `SURREAL_BIN`, a `surreal` 3.3.5
//! on PATH, the official release archive (SHA-256 verified) or, offline, the workspace's source
//! build. It links its choice at `$LAB_CACHE/bin/surreal`. So the search order here is:
//!
//! 1. the environment variable (`SURREAL_BIN`) — an explicit choice always wins, and if it is
//!    wrong that is an error rather than a silent fallback (the lab's scripts set it to setup's link);
//! 2. setup's link, `$LAB_CACHE/bin/<name>` (`LAB_CACHE` defaults to
//!    `${XDG_CACHE_HOME:-$HOME/.cache}/surrealdb-lab`);
//! 3. the workspace's own build: `$CARGO_TARGET_DIR/release/<name>`, then the cache build
//!    `$LAB_CACHE/target/release/<name>`, then `<workspace>/target/release/<name>`;
//! 4. `<name>` on `PATH`.
//!
//! Every candidate is checked by running `<bin> version` and requiring major version 3, because a
//! SurrealDB 1.x/2.x binary on PATH speaks a different protocol and would fail in confusing ways.
//! The official binary and the source build differ only in their allocator (jemalloc against
//! glibc's malloc); the lab treats them alike. `lab bench --compare-server` measures what that
//! difference costs (README, "Which allocator").

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use crate::vocab::error::LabError;

/// The SurrealDB major version the lab is written against (the SDK is pinned to 3.3.5).
pub const REQUIRED_MAJOR: u64 = 3;

/// The command that builds the lab's binaries, quoted in "not found" errors.
pub const BUILD_COMMAND: &str = "scripts/build-server.sh";

/// How long the first source build of the server takes on the lab's reference machine (2 cores),
/// so the learner knows the build command is slow, not stuck.
pub const BUILD_TIME: &str =
    "seconds when the official archive can be downloaded, else about 26 minutes on 2 cores";

/// How long `<bin> version` may take. It prints one line without touching storage.
const VERSION_TIMEOUT: Duration = Duration::from_secs(10);

/// A binary that was found and whose version was checked.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct LocatedBinary {
    /// Absolute path of the executable.
    pub path: PathBuf,
    /// The version it reported, e.g. `3.3.5` (first word of `<bin> version`).
    pub version: String,
    /// The full line it printed, e.g. `3.3.5 for linux on x86_64`.
    pub version_line: String,
}

/// The workspace root, derived from this crate's manifest directory at compile time.
///
/// `poc_helpers` sits directly under the workspace root, so `..` of its manifest directory is the
/// root. This is where `target/lab` (the default lab directory) and `target/release` live.
pub fn workspace_root() -> PathBuf {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    manifest.parent().unwrap_or(manifest).to_path_buf()
}

/// The lab's cache folder: `$LAB_CACHE`, else `${XDG_CACHE_HOME:-$HOME/.cache}/surrealdb-lab`
/// (the same rule as `scripts/env.sh`).
///
/// Builds and downloads live outside the clone so a fresh clone (or CI) reuses them.
pub fn lab_cache_dir() -> Option<PathBuf> {
    if let Some(dir) = std::env::var_os("LAB_CACHE").filter(|v| !v.is_empty()) {
        return Some(PathBuf::from(dir));
    }
    let cache = match std::env::var_os("XDG_CACHE_HOME") {
        Some(dir) if !dir.is_empty() => PathBuf::from(dir),
        _ => PathBuf::from(std::env::var_os("HOME")?).join(".cache"),
    };
    Some(cache.join("surrealdb-lab"))
}

/// The lab's standard build location: `<lab cache>/target` (see [`lab_cache_dir`]).
pub fn cache_target_dir() -> Option<PathBuf> {
    Some(lab_cache_dir()?.join("target"))
}

/// Finds the `surreal` binary: `override_path` (the builder's `.surreal_bin(..)`), else `SURREAL_BIN`,
/// else the workspace build, else PATH. See the module docs.
pub fn locate_surreal(override_path: Option<&Path>) -> Result<LocatedBinary, LabError> {
    locate_workspace_binary(
        "surreal",
        "SURREAL_BIN",
        override_path,
        Some(REQUIRED_MAJOR),
    )
}

/// The generic resolver behind [`locate_surreal`], reusable for the lab's other binaries
/// (`locate_workspace_binary("storage-node", "STORAGE_NODE_BIN", None, None)`).
///
/// `required_major`: when set, `<bin> version` must print a version with that major number.
/// When `None`, the binary only has to run `version` successfully.
pub fn locate_workspace_binary(
    name: &str,
    env_var: &str,
    override_path: Option<&Path>,
    required_major: Option<u64>,
) -> Result<LocatedBinary, LabError> {
    // An explicit path (builder override, then env var) must work: falling back to another binary
    // would hide the learner's mistake.
    let explicit = override_path
        .map(|p| {
            (
                p.to_path_buf(),
                "the builder's `.surreal_bin(..)`".to_string(),
            )
        })
        .or_else(|| {
            std::env::var_os(env_var)
                .filter(|v| !v.is_empty())
                .map(|v| (PathBuf::from(v), env_var.to_string()))
        });
    if let Some((path, source)) = explicit {
        return check_binary(name, &path, required_major).map_err(|reason| LabError::BinaryUnusable {
            name: name.to_string(),
            path: path.display().to_string(),
            reason: format!("{reason} (set by {source})"),
            fix: format!(
                "point {env_var} at a working `{name}` {}, or unset it to use the workspace build \
                 (`{BUILD_COMMAND}`)",
                required_major.map(|m| format!("{m}.x")).unwrap_or_default()
            ),
        });
    }

    let mut tried = Vec::new();
    for candidate in workspace_candidates(name) {
        if candidate.is_file() {
            match check_binary(name, &candidate, required_major) {
                Ok(found) => return Ok(found),
                Err(reason) => tried.push(format!("{} ({reason})", candidate.display())),
            }
        } else {
            tried.push(format!("{} (missing)", candidate.display()));
        }
    }
    match find_on_path(name) {
        Some(candidate) => match check_binary(name, &candidate, required_major) {
            Ok(found) => return Ok(found),
            Err(reason) => tried.push(format!("{} on PATH ({reason})", candidate.display())),
        },
        None => tried.push(format!("`{name}` on PATH (none)")),
    }
    Err(LabError::BinaryNotFound {
        name: name.to_string(),
        tried: tried.join("; "),
        env_var: env_var.to_string(),
        build_command: BUILD_COMMAND.to_string(),
        build_time: BUILD_TIME.to_string(),
    })
}

/// The workspace build locations, in search order (see the module docs).
fn workspace_candidates(name: &str) -> Vec<PathBuf> {
    // Setup's choice first (get-server.sh links it here), then the build folders.
    let chosen = lab_cache_dir().map(|d| d.join("bin").join(name));
    let mut dirs = Vec::new();
    if let Some(dir) = std::env::var_os("CARGO_TARGET_DIR").filter(|v| !v.is_empty()) {
        dirs.push(PathBuf::from(dir));
    }
    if let Some(dir) = cache_target_dir() {
        dirs.push(dir);
    }
    dirs.push(workspace_root().join("target"));
    dirs.dedup();
    chosen
        .into_iter()
        .chain(dirs.into_iter().map(|d| d.join("release").join(name)))
        .collect()
}

/// The first `name` in a `PATH` directory that is an executable file.
fn find_on_path(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(name))
        .find(|p| is_executable(p))
}

/// True for a regular file with an execute bit (Unix) / any regular file (elsewhere).
fn is_executable(path: &Path) -> bool {
    let Ok(meta) = std::fs::metadata(path) else {
        return false;
    };
    if !meta.is_file() {
        return false;
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        meta.permissions().mode() & 0o111 != 0
    }
    #[cfg(not(unix))]
    {
        true
    }
}

/// Checks that `path` exists, is executable and reports an acceptable version.
/// Returns the reason as text on failure (callers wrap it into the right `LabError`).
fn check_binary(
    name: &str,
    path: &Path,
    required_major: Option<u64>,
) -> Result<LocatedBinary, String> {
    if !path.exists() {
        return Err("the file does not exist".into());
    }
    if !is_executable(path) {
        return Err("it is not an executable file".into());
    }
    let line = run_version(path)?;
    let version = parse_version_line(&line)
        .ok_or_else(|| format!("`{name} version` printed `{line}`, which has no version number"))?;
    if let Some(major) = required_major {
        let got = version
            .split('.')
            .next()
            .and_then(|m| m.parse::<u64>().ok());
        if got != Some(major) {
            return Err(format!("it is version {version}, the lab needs {major}.x"));
        }
    }
    let path = path.canonicalize().unwrap_or_else(|_| path.to_path_buf());
    Ok(LocatedBinary {
        path,
        version,
        version_line: line,
    })
}

/// Runs `<bin> version` with a deadline and returns its first non-empty output line.
fn run_version(path: &Path) -> Result<String, String> {
    let mut child = Command::new(path)
        .arg("version")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .map_err(|e| format!("it could not be run: {e}"))?;
    let deadline = std::time::Instant::now() + VERSION_TIMEOUT;
    loop {
        match child.try_wait() {
            Ok(Some(_)) => break,
            Ok(None) if std::time::Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(20))
            }
            _ => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!(
                    "`version` did not answer within {VERSION_TIMEOUT:?}"
                ));
            }
        }
    }
    let out = child
        .wait_with_output()
        .map_err(|e| format!("reading its output failed: {e}"))?;
    if !out.status.success() {
        return Err(format!("`version` failed with {}", out.status));
    }
    let text = String::from_utf8_lossy(&out.stdout);
    text.lines()
        .map(str::trim)
        .find(|l| !l.is_empty())
        .map(str::to_string)
        .ok_or_else(|| "`version` printed nothing".to_string())
}

/// Extracts `3.3.5` from `3.3.5 for linux on x86_64` (or `surrealdb-3.3.5`, as `/version` says).
pub fn parse_version_line(line: &str) -> Option<String> {
    let word = line.split_whitespace().next()?;
    let word = word
        .trim_start_matches("surrealdb-")
        .trim_start_matches('v');
    let numeric = word.split('.').next()?.chars().all(|c| c.is_ascii_digit());
    (numeric && word.contains('.')).then(|| word.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn version_lines_parse() {
        assert_eq!(
            parse_version_line("3.3.5 for linux on x86_64").as_deref(),
            Some("3.3.5")
        );
        assert_eq!(
            parse_version_line("surrealdb-3.3.5").as_deref(),
            Some("3.3.5")
        );
        assert_eq!(parse_version_line("hello world"), None);
        assert_eq!(parse_version_line(""), None);
    }

    #[test]
    fn explicit_missing_binary_is_an_error_naming_the_fix() {
        let err = locate_surreal(Some(Path::new("/nonexistent/surreal"))).unwrap_err();
        let text = err.to_string();
        assert!(text.contains("/nonexistent/surreal"), "{text}");
        assert!(text.contains("does not exist"), "{text}");
        assert!(text.contains("SURREAL_BIN"), "{text}");
    }

    #[test]
    fn a_binary_with_the_wrong_version_is_refused() {
        // `true` runs fine but prints no version: the check must refuse it with a reason.
        let Some(t) = find_on_path("true") else {
            return;
        };
        let err = locate_surreal(Some(&t)).unwrap_err().to_string();
        assert!(
            err.contains("printed nothing") || err.contains("no version"),
            "{err}"
        );
    }

    #[test]
    fn workspace_candidates_end_with_the_workspace_target() {
        let c = workspace_candidates("surreal");
        assert!(c.last().unwrap().ends_with("target/release/surreal"));
    }
}
