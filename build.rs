//! Build facts the binaries carry: the git commit (for the run manifest) and, with the `torch`
//! feature, libtorch's location and version.
//!
//! The rpath to `$LIBTORCH/lib` is what lets `gan-train` start with no `LD_LIBRARY_PATH`.
//! `libtorch_cuda` is linked with `--no-as-needed` because no Rust symbol references it: the
//! linker would otherwise drop it and CUDA would look absent on a GPU machine (BUILD.md).
use std::path::{Path, PathBuf};
use std::process::Command;

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    emit_git_commit();
    if std::env::var_os("CARGO_FEATURE_TORCH").is_some() {
        emit_libtorch();
    }
}

fn emit_git_commit() {
    let git = |args: &[&str]| {
        Command::new("git")
            .args(args)
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
    };
    let commit = git(&["rev-parse", "HEAD"]).unwrap_or_else(|| "unknown".into());
    let dirty = git(&["status", "--porcelain", "--untracked-files=no"]).is_some_and(|s| !s.is_empty());
    let suffix = if dirty { "-dirty" } else { "" };
    println!("cargo:rustc-env=GAN_BUILD_GIT_COMMIT={commit}{suffix}");
    if let Some(git_dir) = git(&["rev-parse", "--git-dir"]) {
        let git_dir = PathBuf::from(git_dir);
        println!("cargo:rerun-if-changed={}", git_dir.join("HEAD").display());
        println!("cargo:rerun-if-changed={}", git_dir.join("index").display());
        if let Some(head_ref) = git(&["symbolic-ref", "-q", "HEAD"]) {
            println!("cargo:rerun-if-changed={}", git_dir.join(head_ref).display());
        }
    }
}

fn emit_libtorch() {
    println!("cargo:rerun-if-env-changed=LIBTORCH");
    let Some(libtorch) = std::env::var_os("LIBTORCH") else {
        println!("cargo:rustc-env=GAN_BUILD_LIBTORCH_VERSION=unknown");
        println!("cargo:rustc-env=GAN_BUILD_PYTHON=python3");
        return;
    };
    let lib_dir = Path::new(&libtorch).join("lib");
    let lib_dir = lib_dir.canonicalize().unwrap_or(lib_dir);
    println!("cargo:rustc-link-arg=-Wl,-rpath,{}", lib_dir.display());
    if lib_dir.join("libtorch_cuda.so").exists() {
        println!("cargo:rustc-link-search=native={}", lib_dir.display());
        println!("cargo:rustc-link-arg=-Wl,--no-as-needed,-ltorch_cuda,--as-needed");
    }
    // The PyPI wheel records its version in torch/version.py: `__version__ = '2.11.0+cu130'`.
    let version_py = Path::new(&libtorch).join("version.py");
    println!("cargo:rerun-if-changed={}", version_py.display());
    let version = std::fs::read_to_string(&version_py)
        .ok()
        .and_then(|text| {
            text.lines().find_map(|l| {
                l.strip_prefix("__version__ = ").map(|v| v.trim_matches(['\'', '"']).to_string())
            })
        })
        .unwrap_or_else(|| "unknown".into());
    println!("cargo:rustc-env=GAN_BUILD_LIBTORCH_VERSION={version}");
    compile_autocast_shim(Path::new(&libtorch));
    // The venv's Python next to this libtorch (site-packages/torch -> ../../../bin/python): the
    // FID weights download uses torch's own hub downloader.
    let python = Path::new(&libtorch)
        .canonicalize()
        .ok()
        .and_then(|t| Some(t.parent()?.parent()?.parent()?.parent()?.join("bin/python")));
    println!(
        "cargo:rustc-env=GAN_BUILD_PYTHON={}",
        python.map_or_else(|| "python3".into(), |p| p.display().to_string())
    );
}

/// The bf16 autocast switch (src/trainer/precision/autocast.cpp) against libtorch's own headers,
/// with the flags torch-sys uses for its wrapper (C++17, the new libstdc++ ABI of the PyPI wheels).
fn compile_autocast_shim(libtorch: &Path) {
    let source = "src/trainer/precision/autocast.cpp";
    println!("cargo:rerun-if-changed={source}");
    cc::Build::new()
        .cpp(true)
        .file(source)
        .include(libtorch.join("include"))
        .include(libtorch.join("include/torch/csrc/api/include"))
        .flag("-std=c++17")
        .flag("-D_GLIBCXX_USE_CXX11_ABI=1")
        .flag("-DGLOG_USE_GLOG_EXPORT")
        .warnings(false)
        .compile("gan_autocast");
}
