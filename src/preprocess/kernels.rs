//! The CUDA C preprocessing kernels (`kernels/`), embedded so the binary can
//! compile them with NVRTC at start-up. Always built (no CUDA needed) so their
//! identity (source hash) is known everywhere.

/// One op per `.cu` file; `entry` is its `extern "C"` kernel.
#[derive(Debug, Clone, Copy)]
pub struct KernelSource {
    pub file: &'static str,
    pub entry: &'static str,
    pub source: &'static str,
}

const HEADER_NAME: &str = "pillow_resample.cuh";
const HEADER: &str = include_str!("../../kernels/pillow_resample.cuh");

pub const KERNELS: &[KernelSource] = &[
    KernelSource {
        file: "resample_horizontal.cu",
        entry: "mvla_resample_horizontal",
        source: include_str!("../../kernels/resample_horizontal.cu"),
    },
    KernelSource {
        file: "resample_vertical_normalize.cu",
        entry: "mvla_resample_vertical_normalize",
        source: include_str!("../../kernels/resample_vertical_normalize.cu"),
    },
];

impl KernelSource {
    /// The translation unit NVRTC compiles: the shared header inlined in
    /// place of its `#include` (NVRTC has no file system include path here).
    pub fn translation_unit(&self) -> String {
        let include = format!("#include \"{HEADER_NAME}\"");
        self.source
            .replace(&include, HEADER.replace("#pragma once", "").as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kernel_includes_the_shared_header_and_names_its_entry() {
        for k in KERNELS {
            assert!(
                k.source.contains(&format!("#include \"{HEADER_NAME}\"")),
                "{}",
                k.file
            );
            let tu = k.translation_unit();
            assert!(!tu.contains("#include"), "{}: unresolved include", k.file);
            assert!(
                tu.contains(&format!("__global__ void {}(", k.entry)),
                "{}",
                k.file
            );
        }
    }
}
