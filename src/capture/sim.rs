//! The simulator's camera as a frame source: renders the world from the
//! simulated base's pose at the camera rate, like the robot's camera
//! delivers frames (1280×720 BGR, YUYV or NV12, upside down when mounted so).
//!
//! It never invents a frame the world did not produce: each frame is one
//! render at its capture time; a render that stalls delays the next frame and
//! the inference stage raises `no_frame`, as with a stalled camera.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::{CaptureError, Frame, FrameSource};
use crate::clock::{Clock, Timestamp};
use crate::frame::{ChannelOrder, Rotation};
use crate::sim::base::SimBase;
use crate::sim::render::{PixelLayout, Renderer};
use crate::sim::world::World;

pub struct SimCamera {
    world: World,
    base: Arc<Mutex<SimBase>>,
    renderer: Renderer,
    layout: PixelLayout,
    clock: Arc<dyn Clock>,
    period: Duration,
    next: Option<Timestamp>,
    seq: u64,
    noise_seed: u64,
    /// What the runtime still has to rotate (its belief about the mounting).
    rotation: Rotation,
}

impl SimCamera {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        world: World,
        base: Arc<Mutex<SimBase>>,
        width: usize,
        height: usize,
        fps: f64,
        layout: PixelLayout,
        rotation: Rotation,
        clock: Arc<dyn Clock>,
    ) -> Self {
        let renderer = Renderer::new(width, height, &world.camera);
        let noise_seed = world.seed ^ 0x43_414D; // "CAM"
        Self {
            world,
            base,
            renderer,
            layout,
            clock,
            period: Duration::from_secs_f64(1.0 / fps.clamp(1.0, 120.0)),
            next: None,
            seq: 0,
            noise_seed,
            rotation,
        }
    }
}

impl FrameSource for SimCamera {
    fn describe(&self) -> String {
        format!(
            "sim camera: {} seed {} ({}x{} {:?} at {:.0} fps)",
            self.world.scenario,
            self.world.seed,
            self.renderer.width(),
            self.renderer.height(),
            self.layout,
            1.0 / self.period.as_secs_f64()
        )
    }

    fn pending_rotation(&self) -> Rotation {
        self.rotation
    }

    fn next_frame(&mut self, frame: &mut Frame) -> Result<(), CaptureError> {
        let due = self.next.unwrap_or_else(|| self.clock.now());
        self.clock.sleep_until(due);
        // The exposure instant is when the pose is read, after the base is
        // ours: a frame never claims to be older than the scene it shows.
        let (now, pose) = {
            let mut b = self
                .base
                .lock()
                .map_err(|_| CaptureError::Disconnected("sim base lock poisoned".into()))?;
            let now = self.clock.now();
            b.advance_to(now);
            (now, b.pose())
        };
        self.seq += 1;
        self.renderer.render(
            &self.world,
            pose,
            self.noise_seed ^ self.seq.wrapping_mul(0x9E37_79B9),
            self.layout,
            &mut frame.data,
        );
        frame.seq = self.seq;
        frame.capture_time = now;
        frame.width = self.renderer.width();
        frame.height = self.renderer.height();
        frame.order = ChannelOrder::Bgr;
        frame.format = self.layout.input_format();
        frame.starts_episode = self.seq == 1;
        frame.replay_position = None;
        // The next exposure one period on; a late render skips slots instead of bursting.
        let mut next = due.plus(self.period);
        if next <= now {
            next = now.plus(self.period);
        }
        self.next = Some(next);
        Ok(())
    }
}
