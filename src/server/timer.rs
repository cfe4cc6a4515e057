//! The loop's one timer: a timerfd in the same epoll set as the sockets.
//!
//! A timeout passed to `epoll_wait` would arm and cancel a kernel timer on every wait,
//! and a busy loop waits very often. The loop's deadlines (request heads, keepalive
//! pings, closing connections) are seconds apart, so the timerfd is armed only when the
//! nearest one moves earlier, and `epoll_wait` sleeps without a timeout (measurements:
//! `bench/README.md`, "Design notes").

use std::io;
use std::num::NonZeroU64;
use std::os::fd::{AsRawFd, OwnedFd};
use std::time::{Duration, Instant};

use mio::unix::SourceFd;
use mio::{Interest, Registry, Token};
use rustix::time::{
    timerfd_create, timerfd_settime, Itimerspec, TimerfdClockId, TimerfdFlags, TimerfdTimerFlags,
    Timespec,
};

/// A one-shot monotonic timer that wakes the loop under its token.
pub struct Timer {
    fd: OwnedFd,
    /// When the timer fires, if it is armed and its expiry not yet consumed.
    armed: Option<Instant>,
}

impl Timer {
    /// Creates the timer (disarmed) and registers it under `token`.
    pub fn new(registry: &Registry, token: Token) -> io::Result<Timer> {
        let flags = TimerfdFlags::NONBLOCK | TimerfdFlags::CLOEXEC;
        let fd = timerfd_create(TimerfdClockId::Monotonic, flags)?;
        registry.register(&mut SourceFd(&fd.as_raw_fd()), token, Interest::READABLE)?;
        Ok(Timer { fd, armed: None })
    }

    /// Makes sure the timer fires no later than `at`: it is set only when nothing is
    /// armed or the armed time is later. Firing early is harmless; the loop checks its
    /// deadlines against the clock.
    pub fn arm_by(&mut self, at: Instant) -> io::Result<()> {
        if self.armed.is_some_and(|armed| armed <= at) {
            return Ok(());
        }
        // A zero value would disarm the timer: an expired deadline fires at once instead.
        let wait = at
            .saturating_duration_since(Instant::now())
            .max(Duration::from_nanos(1));
        let value = Itimerspec {
            it_interval: Timespec {
                tv_sec: 0,
                tv_nsec: 0,
            },
            it_value: Timespec {
                tv_sec: wait.as_secs() as _,
                tv_nsec: wait.subsec_nanos() as _,
            },
        };
        timerfd_settime(&self.fd, TimerfdTimerFlags::empty(), &value)?;
        self.armed = Some(at);
        Ok(())
    }

    /// The timer's event came: consumes the expiry, so the next arming starts afresh.
    pub fn fired(&mut self) {
        let mut count = [0u8; 8];
        // Nothing to read (a stale event) is fine too.
        let _ = rustix::io::read(&self.fd, &mut count);
        self.armed = None;
    }
}

/// A moment as milliseconds since the server started, plus one so that an
/// `Option<Millis>` still takes 8 bytes: half an `Instant`, which adds up over 10,000 idle
/// connections.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Millis(NonZeroU64);

impl Millis {
    /// The epoch itself.
    pub const MIN: Millis = Millis(NonZeroU64::MIN);

    /// `t`, counted from `epoch`.
    pub fn at(epoch: Instant, t: Instant) -> Millis {
        let ms =
            u64::try_from(t.saturating_duration_since(epoch).as_millis()).unwrap_or(u64::MAX - 1);
        Millis(NonZeroU64::MIN.saturating_add(ms))
    }

    /// `ms` milliseconds later.
    #[cfg(test)]
    pub fn offset(self, ms: u64) -> Millis {
        Millis(self.0.saturating_add(ms))
    }

    /// Milliseconds from `earlier` to this moment (0 if `earlier` is later).
    pub fn since(self, earlier: Millis) -> u64 {
        self.0.get().saturating_sub(earlier.0.get())
    }

    /// Back to an `Instant`.
    pub fn instant(self, epoch: Instant) -> Instant {
        epoch + Duration::from_millis(self.0.get() - 1)
    }
}
