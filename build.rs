//! Builds the host emulation of the CUDA preprocessing kernels (always), and
//! the owned TensorRT shim (`src/policy/tensorrt/shim.cpp`) when the
//! `tensorrt` feature is on. Nothing is linked against TensorRT: the shim
//! resolves its factories with dlopen at run time, so only the headers are
//! needed here.
//!
//! Header search (first directory holding `NvInfer.h` wins):
//!   `MVLA_TENSORRT_INCLUDE` (one or more directories, ':'-separated), then the
//!   JetPack / Debian package locations. `cuda_runtime_api.h` is looked up the
//!   same way (`MVLA_CUDA_INCLUDE`, then /usr/local/cuda/include).

use std::env;
use std::path::{Path, PathBuf};

fn dirs_from_env(var: &str) -> Vec<PathBuf> {
    println!("cargo:rerun-if-env-changed={var}");
    env::var_os(var)
        .map(|v| env::split_paths(&v).collect())
        .unwrap_or_default()
}

fn find(header: &str, env_var: &str, defaults: &[&str]) -> Option<PathBuf> {
    dirs_from_env(env_var)
        .into_iter()
        .chain(defaults.iter().map(PathBuf::from))
        .find(|d| d.join(header).is_file())
}

/// The host emulation of the CUDA preprocessing kernels (`kernels/host_emulation.cpp`
/// includes the unchanged `.cu` files). Always compiled, in every
/// configuration, because it needs nothing but a C++ compiler; only the tests
/// (`tests/kernel_emulation.rs`) and the emulated preprocessor call it, so the
/// `mvla` binary does not contain it (unreferenced archive members are not
/// linked).
///
/// `MVLA_KERNEL_SANITIZE=address` builds it with AddressSanitizer and links
/// the tests with the ASan runtime (`.ci/test` runs the emulation tests so,
/// with every buffer at exactly its device size).
fn build_kernel_emulation() {
    println!("cargo:rerun-if-changed=kernels");
    for f in [
        "host_emulation.h",
        "host_emulation.cpp",
        "pillow_resample.cuh",
        "resample_horizontal.cu",
        "resample_vertical_normalize.cu",
    ] {
        println!("cargo:rerun-if-changed=kernels/{f}");
    }
    println!("cargo:rerun-if-env-changed=MVLA_KERNEL_SANITIZE");
    let sanitize = env::var("MVLA_KERNEL_SANITIZE")
        .ok()
        .filter(|s| !s.is_empty());
    let mut build = cc::Build::new();
    build
        .cpp(true)
        .std("c++17")
        .file("kernels/host_emulation.cpp")
        .include("kernels")
        .opt_level(2)
        .warnings(true)
        .extra_warnings(true)
        // The float semantics the NVRTC options give the GPU (cuda.rs: no FMA
        // contraction, IEEE division, no flush-to-zero): x86-64 SSE floats with
        // contraction off and no fast-math.
        .flag("-ffp-contract=off")
        .flag("-fno-fast-math");
    if let Some(s) = &sanitize {
        build
            .flag(format!("-fsanitize={s}"))
            .flag("-fno-omit-frame-pointer")
            .flag("-fno-sanitize-recover=all");
        // rustc links with -nodefaultlibs, which drops gcc's automatic
        // sanitizer runtime: name it (ASan: libasan) explicitly.
        let runtime = match s.as_str() {
            "address" => "asan",
            "undefined" => "ubsan",
            other => panic!("MVLA_KERNEL_SANITIZE={other}: only address or undefined"),
        };
        println!(
            "cargo:rustc-link-arg-tests=-Wl,--push-state,--no-as-needed,-l{runtime},--pop-state"
        );
        println!("cargo:warning=kernel emulation built with -fsanitize={s}");
    }
    build.compile("mvla_kernel_emulation");
}

/// The commit the binary is built from, as `MVLA_GIT_COMMIT` for `mvla
/// doctor`'s report (a robot has no checkout to ask later). Nothing is set
/// outside a git checkout (a source tarball): the report then says "unknown".
/// Uncommitted changes are not detected: this script does not rerun on every
/// source edit, so a "dirty" flag would go stale.
fn emit_git_commit() {
    let git = |args: &[&str]| -> Option<String> {
        let out = std::process::Command::new("git").args(args).output().ok()?;
        out.status
            .success()
            .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
            .filter(|s| !s.is_empty())
    };
    let Some(commit) = git(&["rev-parse", "HEAD"]) else {
        return;
    };
    // Rerun when HEAD moves: HEAD itself (checkout), the branch it names
    // (commit) and packed-refs (after `git gc`). Only existing files: cargo
    // reruns a script every build when a watched path is missing.
    let mut watched = vec!["HEAD".to_string(), "packed-refs".to_string()];
    watched.extend(git(&["symbolic-ref", "-q", "HEAD"]));
    for name in watched {
        if let Some(path) = git(&["rev-parse", "--git-path", &name]) {
            if Path::new(&path).is_file() {
                println!("cargo:rerun-if-changed={path}");
            }
        }
    }
    println!("cargo:rustc-env=MVLA_GIT_COMMIT={commit}");
}

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-changed=src/policy/tensorrt/shim.cpp");
    emit_git_commit();
    build_kernel_emulation();
    if env::var_os("CARGO_FEATURE_TENSORRT").is_none() {
        return;
    }
    let trt = find(
        "NvInfer.h",
        "MVLA_TENSORRT_INCLUDE",
        &[
            "/usr/include/aarch64-linux-gnu", // JetPack 6
            "/usr/include/x86_64-linux-gnu",  // TensorRT Debian packages
            "/usr/local/TensorRT/include",
            "/usr/include",
        ],
    )
    .unwrap_or_else(|| {
        panic!(
            "feature `tensorrt`: NvInfer.h not found; set MVLA_TENSORRT_INCLUDE to the TensorRT \
             include directory (JetPack: /usr/include/aarch64-linux-gnu)"
        )
    });
    let cuda = find(
        "cuda_runtime_api.h",
        "MVLA_CUDA_INCLUDE",
        &["/usr/local/cuda/include", "/usr/include"],
    )
    .or_else(|| {
        trt.join("cuda_runtime_api.h")
            .is_file()
            .then(|| trt.clone())
    })
    .or_else(|| {
        let parent = trt.parent().map(Path::to_path_buf)?;
        parent
            .join("cuda_runtime_api.h")
            .is_file()
            .then_some(parent)
    })
    .unwrap_or_else(|| {
        panic!(
            "feature `tensorrt`: cuda_runtime_api.h not found; set MVLA_CUDA_INCLUDE \
             (JetPack: /usr/local/cuda/include)"
        )
    });
    println!(
        "cargo:warning=TensorRT shim: headers from {}",
        trt.display()
    );
    cc::Build::new()
        .cpp(true)
        .std("c++17")
        .file("src/policy/tensorrt/shim.cpp")
        .include(&trt)
        .include(&cuda)
        .warnings(true)
        .extra_warnings(true)
        .flag_if_supported("-Wno-deprecated-declarations")
        .flag_if_supported("-Wno-unused-parameter")
        .compile("mvla_trt_shim");
    // dlopen/dlsym live in libc on glibc >= 2.34 and in libdl before.
    println!("cargo:rustc-link-lib=dylib=dl");
}
