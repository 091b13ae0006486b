//! Build script: records the git commit the binary is built from as `ROOMCAST_GIT_COMMIT` (shown in
//! `roomcast_build_info` on `/metrics`). Order: the `ROOMCAST_GIT_COMMIT` environment variable (for
//! builds without a `.git`, such as Docker), else `git rev-parse --short HEAD`, else `unknown`.

use std::path::PathBuf;
use std::process::Command;

fn git(args: &[&str]) -> Option<String> {
    let out = Command::new("git").args(args).output().ok()?;
    if !out.status.success() {
        return None;
    }
    let text = String::from_utf8(out.stdout).ok()?.trim().to_string();
    (!text.is_empty()).then_some(text)
}

fn main() {
    println!("cargo:rerun-if-env-changed=ROOMCAST_GIT_COMMIT");
    println!("cargo:rerun-if-changed=build.rs");
    let from_env = std::env::var("ROOMCAST_GIT_COMMIT").ok().filter(|c| !c.trim().is_empty());
    let commit = from_env.or_else(|| git(&["rev-parse", "--short", "HEAD"])).unwrap_or_else(|| "unknown".into());
    // Rebuild when HEAD moves: HEAD itself (branch switch, detached commits) and the branch's ref.
    // Only existing files: Cargo reruns the script on every build for a path that does not exist.
    let mut watch = Vec::new();
    if let Some(git_dir) = git(&["rev-parse", "--git-dir"]) {
        watch.push(PathBuf::from(git_dir).join("HEAD"));
    }
    if let (Some(common), Some(head_ref)) =
        (git(&["rev-parse", "--git-common-dir"]), git(&["symbolic-ref", "-q", "HEAD"]))
    {
        watch.push(PathBuf::from(&common).join(head_ref));
        watch.push(PathBuf::from(common).join("packed-refs"));
    }
    for path in watch.iter().filter(|p| p.exists()) {
        println!("cargo:rerun-if-changed={}", path.display());
    }
    println!("cargo:rustc-env=ROOMCAST_GIT_COMMIT={commit}");
}
