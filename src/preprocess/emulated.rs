//! The CUDA preprocessing kernels executed on the CPU: `kernels/host_emulation.cpp`
//! compiles the unchanged `.cu` sources under `kernels/host_emulation.h` and
//! runs every GPU thread as one call of the kernel function.
//!
//! This executor takes the same [`LaunchPlan`] as the GPU ([`super::cuda`]):
//! the same grids and blocks, the same coefficient tables, the same argument
//! lists, and buffers of exactly the device sizes (so an AddressSanitizer
//! build catches any access a GPU would make out of bounds). It exists to
//! prove the kernels without a GPU (tests, CI); the runtime uses the CPU twin
//! ([`super::CpuPreprocessor`]) or the GPU.

use std::ffi::c_void;

use super::launch::{
    Buffer, KernelArg, Launch, LaunchPlan, LaunchPlanError, OutputPrecision, TABLES,
};
use super::{ChannelOrder, FrameRef, InputFormat, PreprocessError, PreprocessSpec, Preprocessor};

extern "C" {
    fn mvla_emu_arity(kernel: i32) -> i32;
    fn mvla_emu_launch(
        kernel: i32,
        grid: *const u32,
        block: *const u32,
        params: *mut *mut c_void,
        n_params: i32,
        host_threads: i32,
        seed: u64,
    ) -> i32;
    fn mvla_emu_cvt_rn_f16_f32(f: f32) -> u16;
}

/// The emulated PTX `cvt.rn.f16.f32` (for testing it against `half`).
pub fn emulated_f32_to_f16_bits(f: f32) -> u16 {
    // SAFETY: a pure function of its argument.
    unsafe { mvla_emu_cvt_rn_f16_f32(f) }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kernel {
    // Ids of kernels/host_emulation.cpp (`MVLA_EMU_*`).
    Horizontal = 0,
    Vertical = 1,
}

impl Kernel {
    fn name(self) -> &'static str {
        match self {
            Self::Horizontal => "mvla_resample_horizontal",
            Self::Vertical => "mvla_resample_vertical_normalize",
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum EmulationError {
    #[error(transparent)]
    Plan(#[from] LaunchPlanError),
    #[error("frame has {actual} bytes, the plan is for {expected}")]
    FrameLen { expected: usize, actual: usize },
    #[error("output holds {actual} floats, the model input needs {expected}")]
    OutputLen { expected: usize, actual: usize },
    #[error(
        "{kernel:?} kernel: the launch plan gives {given} arguments, the kernel takes {takes}"
    )]
    Arity {
        kernel: &'static str,
        given: usize,
        takes: i32,
    },
}

/// How the emulated GPU threads are run: the result must not depend on it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Schedule {
    /// Host threads sharing the GPU threads (>= 1).
    pub host_threads: usize,
    /// 0: blocks and threads in order; otherwise a shuffled order from this seed.
    pub seed: u64,
}

impl Default for Schedule {
    fn default() -> Self {
        Self {
            host_threads: 1,
            seed: 0,
        }
    }
}

/// The kernels' device buffers as host memory of exactly the device sizes.
pub struct EmulatedKernels {
    plan: LaunchPlan,
    precision: OutputPrecision,
    schedule: Schedule,
    source: Vec<u8>,
    intermediate: Vec<u8>,
    tables: [Vec<i32>; 6],
    out32: Vec<f32>,
    out16: Vec<u16>,
}

impl EmulatedKernels {
    pub fn new(
        spec: PreprocessSpec,
        in_width: usize,
        in_height: usize,
        format: InputFormat,
        precision: OutputPrecision,
    ) -> Result<Self, EmulationError> {
        let plan = LaunchPlan::new(spec, in_width, in_height, format)?;
        let len = |b| plan.buffer_len(b, precision);
        let tables = TABLES.map(|b| plan.table(b).expect("a table buffer").to_vec());
        Ok(Self {
            source: vec![0; len(Buffer::Source)],
            intermediate: vec![0; len(Buffer::Intermediate)],
            out32: vec![0.0; len(Buffer::OutputF32)],
            out16: vec![0; len(Buffer::OutputF16)],
            tables,
            plan,
            precision,
            schedule: Schedule::default(),
        })
    }

    pub fn plan(&self) -> &LaunchPlan {
        &self.plan
    }

    pub fn set_schedule(&mut self, schedule: Schedule) {
        self.schedule = schedule;
    }

    /// Fill every kernel-written buffer with `byte` (a sentinel: tests check
    /// that the kernels overwrite all of it).
    pub fn fill_outputs(&mut self, byte: u8) {
        self.intermediate.fill(byte);
        self.out32
            .fill(f32::from_bits(u32::from_ne_bytes([byte; 4])));
        self.out16.fill(u16::from_ne_bytes([byte; 2]));
    }

    /// The u8 intermediate image after the horizontal pass.
    pub fn intermediate(&self) -> &[u8] {
        &self.intermediate
    }

    /// Raw fp16 output bits (precision F16).
    pub fn output_f16(&self) -> &[u16] {
        &self.out16
    }

    /// Raw fp32 output (precision F32).
    pub fn output_f32(&self) -> &[f32] {
        &self.out32
    }

    /// Run both kernels on `bytes` (the raw camera buffer, `order` for packed
    /// frames) into the device-sized buffers.
    pub fn run(&mut self, bytes: &[u8], order: ChannelOrder) -> Result<(), EmulationError> {
        if bytes.len() != self.source.len() {
            return Err(EmulationError::FrameLen {
                expected: self.source.len(),
                actual: bytes.len(),
            });
        }
        self.source.copy_from_slice(bytes);
        let h = self.plan.horizontal_args();
        self.launch(Kernel::Horizontal, self.plan.horizontal, &h)?;
        let v = self.plan.vertical_args(order, self.precision);
        self.launch(Kernel::Vertical, self.plan.vertical, &v)
    }

    /// Run, then give the model input as f32 (fp16 output widened exactly).
    pub fn run_to_host(
        &mut self,
        bytes: &[u8],
        order: ChannelOrder,
        out: &mut [f32],
    ) -> Result<(), EmulationError> {
        let expected = self.plan.spec.output_len();
        if out.len() != expected {
            return Err(EmulationError::OutputLen {
                expected,
                actual: out.len(),
            });
        }
        self.run(bytes, order)?;
        match self.precision {
            OutputPrecision::F32 => out.copy_from_slice(&self.out32),
            OutputPrecision::F16 => {
                for (o, &h) in out.iter_mut().zip(&self.out16) {
                    *o = half::f16::from_bits(h).to_f32();
                }
            }
        }
        Ok(())
    }

    fn launch(
        &mut self,
        kernel: Kernel,
        launch: Launch,
        args: &[KernelArg],
    ) -> Result<(), EmulationError> {
        // SAFETY: a pure query of the emulation library.
        let takes = unsafe { mvla_emu_arity(kernel as i32) };
        if usize::try_from(takes).ok() != Some(args.len()) {
            return Err(EmulationError::Arity {
                kernel: kernel.name(),
                given: args.len(),
                takes,
            });
        }
        // Argument values, each at a stable address (cuLaunchKernel's
        // kernelParams convention: params[i] points at the i-th value). A
        // buffer argument's value is its (host) pointer.
        #[derive(Clone, Copy)]
        enum Value {
            Ptr(*mut c_void),
            I32(i32),
            F32(f32),
        }
        let mut values = [Value::I32(0); 24];
        for (slot, arg) in values.iter_mut().zip(args) {
            *slot = match *arg {
                KernelArg::I32(v) => Value::I32(v),
                KernelArg::F32(v) => Value::F32(v),
                KernelArg::Buffer(b) => Value::Ptr(self.pointer(b)),
            };
        }
        let mut params = [std::ptr::null_mut::<c_void>(); 24];
        for (p, v) in params.iter_mut().zip(values.iter_mut()).take(args.len()) {
            *p = match v {
                Value::Ptr(ptr) => ptr as *mut *mut c_void as *mut c_void,
                Value::I32(x) => x as *mut i32 as *mut c_void,
                Value::F32(x) => x as *mut f32 as *mut c_void,
            };
        }
        // SAFETY: `params` holds `args.len()` pointers to live values whose
        // types follow the kernel's parameter list (the plan's argument list is
        // in declaration order; the arity was checked above, and the tests
        // compare results with the CPU twin). Buffer pointers point into this
        // struct's Vecs, sized by the same plan the kernels index by.
        let rc = unsafe {
            mvla_emu_launch(
                kernel as i32,
                launch.grid.as_ptr(),
                launch.block.as_ptr(),
                params.as_mut_ptr(),
                args.len() as i32,
                self.schedule.host_threads.max(1) as i32,
                self.schedule.seed,
            )
        };
        if rc != 0 {
            // Only a bad kernel id or argument count makes the launcher refuse.
            return Err(EmulationError::Arity {
                kernel: kernel.name(),
                given: args.len(),
                takes,
            });
        }
        Ok(())
    }

    fn pointer(&mut self, buffer: Buffer) -> *mut c_void {
        match buffer {
            Buffer::Source => self.source.as_mut_ptr().cast(),
            Buffer::Intermediate => self.intermediate.as_mut_ptr().cast(),
            Buffer::OutputF32 => self.out32.as_mut_ptr().cast(),
            Buffer::OutputF16 => self.out16.as_mut_ptr().cast(),
            table => {
                let i = table.table_index().expect("every other buffer is a table");
                self.tables[i].as_mut_ptr().cast()
            }
        }
    }
}

/// The emulated kernels behind the [`Preprocessor`] trait, for packed frames.
pub struct EmulatedPreprocessor {
    kernels: Option<EmulatedKernels>,
    spec: PreprocessSpec,
    precision: OutputPrecision,
}

impl EmulatedPreprocessor {
    pub fn new(spec: PreprocessSpec, precision: OutputPrecision) -> Self {
        Self {
            kernels: None,
            spec,
            precision,
        }
    }
}

impl Preprocessor for EmulatedPreprocessor {
    fn spec(&self) -> &PreprocessSpec {
        &self.spec
    }

    fn run(&mut self, frame: FrameRef<'_>, out: &mut [f32]) -> Result<(), PreprocessError> {
        let expected = frame.width * frame.height * 3;
        if frame.data.len() != expected || expected == 0 {
            return Err(PreprocessError::FrameSize {
                width: frame.width,
                height: frame.height,
                expected,
                actual: frame.data.len(),
            });
        }
        let fits = self
            .kernels
            .as_ref()
            .is_some_and(|k| k.plan.fits(frame.width, frame.height, InputFormat::Packed3));
        if !fits {
            self.kernels = Some(
                EmulatedKernels::new(
                    self.spec,
                    frame.width,
                    frame.height,
                    InputFormat::Packed3,
                    self.precision,
                )
                .map_err(|e| PreprocessError::Device(e.to_string()))?,
            );
        }
        let kernels = self.kernels.as_mut().expect("set above");
        kernels
            .run_to_host(frame.data, frame.order, out)
            .map_err(|e| PreprocessError::Device(e.to_string()))
    }
}
