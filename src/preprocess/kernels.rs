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

/// PTX instructions whose float semantics differ from the CPU twin's (and
/// from the host emulation's): fused multiply-add (FMA contraction),
/// flush-to-zero, approximate division/reciprocal/square root. Each entry
/// names the instruction and its line. Integer `mad` is fine.
pub fn ptx_float_semantics_violations(ptx: &str) -> Vec<String> {
    let mut found = Vec::new();
    for (n, line) in ptx.lines().enumerate() {
        let code = line.split("//").next().unwrap_or("").trim();
        // Skip a predicate guard (`@%p1` / `@!%p1`) before the opcode.
        let Some(op) = code.split_whitespace().find(|t| !t.starts_with('@')) else {
            continue;
        };
        let parts: Vec<&str> = op.split('.').collect();
        let float = parts
            .iter()
            .any(|p| matches!(*p, "f16" | "f16x2" | "bf16" | "f32" | "f64"));
        let mut why = Vec::new();
        if parts.contains(&"ftz") {
            why.push("flush-to-zero");
        }
        if float && (parts[0] == "fma" || parts[0] == "mad") {
            why.push("fused multiply-add");
        }
        if parts.contains(&"approx") || (parts[0] == "div" && parts.contains(&"full")) {
            why.push("approximate arithmetic");
        } else if float && parts[0] == "div" && !parts.contains(&"rn") {
            why.push("division not rounded to nearest");
        }
        if !why.is_empty() {
            found.push(format!("line {}: {}: {code}", n + 1, why.join(", ")));
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn float_semantics_check_flags_fma_ftz_and_approximate_division_only() {
        let ptx = "\
            mad.lo.s32 %r5, %r1, %r2, %r3;\n\
            div.rn.f32 %f3, %f1, %f2;\n\
            cvt.rn.f16.f32 %rs1, %f3;\n\
            sub.f32 %f4, %f3, %f2; // fma.rn.f32 in a comment\n\
            fma.rn.f32 %f5, %f1, %f2, %f3;\n\
            mul.ftz.f32 %f6, %f1, %f2;\n\
            div.approx.f32 %f7, %f1, %f2;\n\
            div.full.f32 %f8, %f1, %f2;\n\
            @%p1 rcp.approx.ftz.f64 %fd1, %fd2;\n";
        let v = ptx_float_semantics_violations(ptx);
        assert_eq!(v.len(), 5, "{v:#?}");
        assert!(v[0].starts_with("line 5: fused multiply-add:"), "{}", v[0]);
        assert!(v[1].starts_with("line 6: flush-to-zero:"), "{}", v[1]);
        assert!(v[2].starts_with("line 7: approximate"), "{}", v[2]);
        assert!(v[3].starts_with("line 8: approximate"), "{}", v[3]);
        assert!(
            v[4].starts_with("line 9: flush-to-zero, approximate"),
            "{}",
            v[4]
        );
    }

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
