//! Engine build: ONNX parser → builder (FP16, workspace limit, optimisation
//! profile for the head's window length, timing cache) → parity gate against
//! the tract reference → engines + parity record on disk.

use std::ffi::{c_char, c_void, CStr, CString};
use std::path::Path;

use super::ffi::{self, Dims};
use super::runtime::{
    c_names, compute_capability, err_buf, err_text, gpu_stream, open, open_parser, TrtError,
    ERR_LEN,
};
use super::TensorRtPolicy;
use crate::policy::engine::{
    self, engine_paths, BuildEvent, BuildOptions, BuildOutcome, ParityRecord, Precision, Role,
};
use crate::policy::{ModelMeta, Policy, PolicyError};

struct ProgressCtx<'a> {
    role: Role,
    sink: &'a mut dyn FnMut(BuildEvent<'_>),
}

unsafe extern "C" fn progress_trampoline(
    user: *mut c_void,
    kind: i32,
    phase: *const c_char,
    parent: *const c_char,
    value: i32,
) -> i32 {
    // SAFETY: `user` is the &mut ProgressCtx passed to mvla_trt_build for this call.
    let ctx = unsafe { &mut *(user as *mut ProgressCtx<'_>) };
    let text = |p: *const c_char| {
        // SAFETY: TensorRT passes NUL-terminated phase names valid for the call.
        (!p.is_null()).then(|| unsafe { CStr::from_ptr(p) }.to_string_lossy().into_owned())
    };
    let name = text(phase).unwrap_or_default();
    let parent = text(parent);
    let role = ctx.role;
    match kind {
        0 => (ctx.sink)(BuildEvent::Phase {
            role,
            name: &name,
            parent: parent.as_deref(),
            steps: value,
        }),
        1 => (ctx.sink)(BuildEvent::Step {
            role,
            name: &name,
            step: value,
        }),
        _ => (ctx.sink)(BuildEvent::PhaseDone { role, name: &name }),
    }
    1
}

#[derive(Default)]
struct Sinks {
    engine: Vec<u8>,
    cache: Vec<u8>,
}

unsafe extern "C" fn engine_sink(user: *mut c_void, data: *const c_void, len: usize) {
    // SAFETY: `user` is the &mut Sinks of this build; data is valid for len bytes.
    let s = unsafe { &mut *(user as *mut Sinks) };
    s.engine
        .extend_from_slice(unsafe { std::slice::from_raw_parts(data.cast::<u8>(), len) });
}

unsafe extern "C" fn cache_sink(user: *mut c_void, data: *const c_void, len: usize) {
    // SAFETY: as in `engine_sink`.
    let s = unsafe { &mut *(user as *mut Sinks) };
    s.cache.clear();
    s.cache
        .extend_from_slice(unsafe { std::slice::from_raw_parts(data.cast::<u8>(), len) });
}

fn write_atomically(path: &Path, bytes: &[u8]) -> Result<(), TrtError> {
    let io = |source| TrtError::Io {
        path: path.display().to_string(),
        source,
    };
    let tmp = path.with_extension("partial");
    std::fs::write(&tmp, bytes).map_err(io)?;
    std::fs::rename(&tmp, path).map_err(io)
}

fn c_path(p: &Path) -> CString {
    CString::new(p.as_os_str().as_encoded_bytes()).expect("no NUL in paths")
}

#[allow(clippy::too_many_arguments)]
fn build_one(
    onnx: &Path,
    role: Role,
    options: &BuildOptions,
    profiles: &[(String, [Vec<i64>; 3])],
    half_inputs: &[&str],
    timing_cache: &mut Vec<u8>,
    progress: &mut dyn FnMut(BuildEvent<'_>),
) -> Result<Vec<u8>, TrtError> {
    let onnx_c = c_path(onnx);
    let names: Vec<CString> = profiles
        .iter()
        .map(|(n, _)| CString::new(n.as_str()).expect("tensor names have no NUL"))
        .collect();
    let ffi_profiles: Vec<ffi::Profile> = profiles
        .iter()
        .zip(&names)
        .map(|((_, [min, opt, max]), n)| ffi::Profile {
            name: n.as_ptr(),
            min: Dims::new(min),
            opt: Dims::new(opt),
            max: Dims::new(max),
        })
        .collect();
    let (_half_owned, half_ptrs) = c_names(half_inputs);
    let opts = ffi::BuildOptions {
        onnx_path: onnx_c.as_ptr(),
        fp16: i32::from(options.precision == Precision::Fp16),
        workspace_bytes: options.workspace_bytes,
        profiles: ffi_profiles.as_ptr(),
        nb_profiles: ffi_profiles.len() as i32,
        half_inputs: half_ptrs.as_ptr(),
        nb_half_inputs: half_ptrs.len() as i32,
        timing_cache: timing_cache.as_ptr().cast(),
        timing_cache_len: timing_cache.len(),
        optimization_level: options.optimization_level,
    };
    let mut sinks = Sinks::default();
    let mut ctx = ProgressCtx {
        role,
        sink: progress,
    };
    let mut err = err_buf();
    // SAFETY: every pointer in `opts` refers to data alive for the call; the
    // callbacks' user pointers are the locals above, used only during the call.
    let rc = unsafe {
        ffi::mvla_trt_build(
            &opts,
            Some(progress_trampoline),
            (&mut ctx as *mut ProgressCtx<'_>).cast(),
            engine_sink,
            Some(cache_sink),
            (&mut sinks as *mut Sinks).cast(),
            err.as_mut_ptr().cast(),
            ERR_LEN,
        )
    };
    if rc != 0 {
        return Err(TrtError::Build {
            onnx: onnx.display().to_string(),
            message: err_text(&err),
        });
    }
    if !sinks.cache.is_empty() {
        *timing_cache = sinks.cache;
    }
    Ok(sinks.engine)
}

/// Build (or reuse) both engines for `meta` in `dir`, then run the parity
/// gate against the reference backend `make_reference` loads (the same
/// graphs through tract). The reference runs — and is dropped — before the
/// build, and only when something is built. Engines that fail the gate stay
/// on disk for inspection, but their record says failed, so they are never
/// loaded.
pub fn build_engines(
    meta: &ModelMeta,
    dir: &Path,
    options: &BuildOptions,
    make_reference: &mut dyn FnMut() -> Result<Box<dyn Policy>, PolicyError>,
    progress: &mut dyn FnMut(BuildEvent<'_>),
) -> Result<BuildOutcome, TrtError> {
    let trt = open()?;
    open_parser()?;
    let stream = gpu_stream()?;
    let sm = compute_capability(&stream)?;
    let (bkey, hkey, paths) = engine_paths(meta, dir, trt, sm, options.precision);
    std::fs::create_dir_all(dir).map_err(|source| TrtError::Io {
        path: dir.display().to_string(),
        source,
    })?;
    let stale = engine::stale_engines(dir, &[&bkey, &hkey]);
    if !options.force && paths.backbone.is_file() && paths.head.is_file() {
        if let Ok(record) = ParityRecord::check(&paths, &options.thresholds) {
            progress(BuildEvent::Message(
                "engines present and vouched for by their parity record; reusing them",
            ));
            return Ok(BuildOutcome {
                paths,
                reused: true,
                record,
                stale,
            });
        }
    }
    progress(BuildEvent::Message(
        "parity reference: the ONNX graphs through tract on the gate's frames",
    ));
    let reference_run = {
        let mut reference = make_reference()?;
        let inputs = engine::parity_inputs(meta, options.parity_frames.max(1));
        engine::ReferenceRun::compute(reference.as_mut(), inputs)?
    }; // the reference backend is freed here, before TensorRT allocates
    let mut timing = std::fs::read(&paths.timing_cache).unwrap_or_default();
    let raw = &meta.raw;

    // Backbone: static shapes; the pixel input optionally fp16 (zero copy from the kernel).
    let half: Vec<&str> = if options.half_pixel_input && options.precision == Precision::Fp16 {
        vec!["pixel_values"]
    } else {
        Vec::new()
    };
    progress(BuildEvent::Message(
        "building the backbone engine (minutes)",
    ));
    let backbone = build_one(
        &meta.backbone_path,
        Role::Backbone,
        options,
        &[],
        &half,
        &mut timing,
        progress,
    )?;
    write_atomically(&paths.backbone, &backbone)?;
    drop(backbone);

    // Head: window length is dynamic, 1..=window, optimised for the full window.
    let dim = meta.feature_dim() as i64;
    let w = raw.window as i64;
    let profile = (
        raw.head.input.clone(),
        [vec![1, 1, dim], vec![1, w, dim], vec![1, w, dim]],
    );
    progress(BuildEvent::Message("building the head engine"));
    let head = build_one(
        &meta.head_path,
        Role::Head,
        options,
        &[profile],
        &[],
        &mut timing,
        progress,
    )?;
    write_atomically(&paths.head, &head)?;
    drop(head);
    if !timing.is_empty() {
        write_atomically(&paths.timing_cache, &timing)?;
    }

    progress(BuildEvent::Message(
        "parity gate: engines vs the ONNX graphs through tract",
    ));
    let mut candidate = TensorRtPolicy::load_unchecked(meta.clone(), &paths, stream)?;
    let report = engine::compare_run(&reference_run, &mut candidate, options.thresholds)?;
    let sha = |p: &Path| {
        crate::policy::meta::sha256_file(p).map_err(|source| TrtError::Io {
            path: p.display().to_string(),
            source,
        })
    };
    let record = ParityRecord {
        format: engine::PARITY_FORMAT.into(),
        model_id: meta.model_id.clone(),
        backbone_engine: bkey.file_name(),
        backbone_engine_sha256: sha(&paths.backbone)?,
        head_engine: hkey.file_name(),
        head_engine_sha256: sha(&paths.head)?,
        tensorrt: trt,
        compute_capability: sm,
        precision: options.precision,
        reference: "the same ONNX graphs through tract (fp32, CPU)".into(),
        report,
    };
    record.write(&paths.parity).map_err(|source| TrtError::Io {
        path: paths.parity.display().to_string(),
        source,
    })?;
    if !record.report.passed {
        return Err(TrtError::ParityFailed(Box::new(record.report)));
    }
    Ok(BuildOutcome {
        paths,
        reused: false,
        record,
        stale,
    })
}
