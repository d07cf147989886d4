//! The monotonic clock and sleeps towards an absolute deadline, which a
//! signal storm cannot stretch: the rendezvous's waits are bounded by them.

use std::time::Duration;

/// Now on the monotonic clock (`CLOCK_MONOTONIC`), as a time since an
/// arbitrary start; never goes back, whatever happens to the wall clock.
pub(crate) fn monotonic_now() -> Duration {
    let mut now = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `now` is a valid, writable `timespec`; `CLOCK_MONOTONIC`
    // always exists on Linux, so the call cannot fail.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut now) };
    Duration::new(
        u64::try_from(now.tv_sec).unwrap_or(0),
        u32::try_from(now.tv_nsec).unwrap_or(0),
    )
}

/// Sleeps until the monotonic clock reads `deadline`.
///
/// The deadline is absolute, so a signal storm cannot stretch the wait: a
/// relative sleep restarted after each signal (what `std::thread::sleep`
/// does) gets the timer slack added every time and, with a signal every
/// 50 µs, never completes. Here an interrupted sleep is resumed towards the
/// same deadline, and returns at once once it has passed.
#[cfg(not(target_vendor = "apple"))]
pub(crate) fn sleep_until(deadline: Duration) {
    let target = libc::timespec {
        tv_sec: libc::time_t::try_from(deadline.as_secs()).unwrap_or(libc::time_t::MAX),
        // Below 10^9, so it fits a `c_long` of 32 bits (32-bit targets).
        tv_nsec: deadline.subsec_nanos() as libc::c_long,
    };
    loop {
        // SAFETY: `target` is a valid `timespec`; with `TIMER_ABSTIME` the
        // remaining-time pointer is not used and may be null. The error is
        // returned, not set in `errno`.
        let result = unsafe {
            libc::clock_nanosleep(
                libc::CLOCK_MONOTONIC,
                libc::TIMER_ABSTIME,
                &target,
                std::ptr::null_mut(),
            )
        };
        if result != libc::EINTR || monotonic_now() >= deadline {
            return;
        }
    }
}

/// Sleeps until the monotonic clock reads `deadline`. macOS has no
/// `clock_nanosleep`: each relative `nanosleep` is computed afresh from the
/// clock, so an interrupted sleep still ends at the same deadline.
#[cfg(target_vendor = "apple")]
pub(crate) fn sleep_until(deadline: Duration) {
    loop {
        let Some(left) = deadline
            .checked_sub(monotonic_now())
            .filter(|left| !left.is_zero())
        else {
            return;
        };
        let request = libc::timespec {
            tv_sec: libc::time_t::try_from(left.as_secs()).unwrap_or(libc::time_t::MAX),
            tv_nsec: left.subsec_nanos().into(),
        };
        // SAFETY: `request` is a valid `timespec`; the remainder is not
        // wanted, so its pointer may be null.
        unsafe { libc::nanosleep(&request, std::ptr::null_mut()) };
    }
}

/// Sleeps for `duration` on the monotonic clock; see [`sleep_until`].
pub(crate) fn sleep(duration: Duration) {
    sleep_until(monotonic_now().saturating_add(duration));
}
