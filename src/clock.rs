//! A cheap cycle clock for per-command timing (INFO commandstats): the TSC on x86-64, read in a
//! few nanoseconds, converted to microseconds with a rate measured once at start-up. Elsewhere
//! it falls back to a monotonic nanosecond clock.

use std::sync::OnceLock;
use std::time::{Duration, Instant};

static START: OnceLock<Instant> = OnceLock::new();
static TICKS_PER_US: OnceLock<f64> = OnceLock::new();

/// The current tick count.
pub fn ticks() -> u64 {
    #[cfg(target_arch = "x86_64")]
    {
        // SAFETY: RDTSC has no preconditions on x86-64.
        unsafe { core::arch::x86_64::_rdtsc() }
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        START.get_or_init(Instant::now).elapsed().as_nanos() as u64
    }
}

/// Measures the tick rate (call once at start-up; takes about 20 ms).
pub fn calibrate() {
    let t0 = Instant::now();
    let c0 = ticks();
    std::thread::sleep(Duration::from_millis(20));
    let c1 = ticks();
    let us = t0.elapsed().as_secs_f64() * 1e6;
    let rate = (c1.wrapping_sub(c0)) as f64 / us;
    let _ = TICKS_PER_US.set(if rate.is_finite() && rate > 0.0 {
        rate
    } else {
        1000.0
    });
    let _ = START.get_or_init(Instant::now);
}

/// Converts microseconds to a tick count.
pub fn from_us(us: u64) -> u64 {
    (us as f64 * TICKS_PER_US.get().copied().unwrap_or(1000.0)) as u64
}

/// Converts a tick count to microseconds.
pub fn to_us(ticks: u64) -> u64 {
    (ticks as f64 / TICKS_PER_US.get().copied().unwrap_or(1000.0)) as u64
}
