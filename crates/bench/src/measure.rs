//! Readings of a process from /proc (CPU time, resident memory) and the
//! statistics the report gives.

use std::time::Duration;

/// CPU time (user + system) a process has used so far.
pub fn cpu_time(pid: u32) -> Option<Duration> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    cpu_time_of(&stat, clock_ticks())
}

/// From the text of /proc/PID/stat: fields 14 and 15 (utime, stime) in
/// clock ticks, counted after the command name, which may hold spaces.
pub fn cpu_time_of(stat: &str, ticks_per_second: u64) -> Option<Duration> {
    let after_name = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    // after_name starts at field 3 (state).
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some(Duration::from_secs_f64(
        (utime + stime) as f64 / ticks_per_second as f64,
    ))
}

fn clock_ticks() -> u64 {
    // SAFETY: sysconf only reads a configuration value.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    u64::try_from(ticks).ok().filter(|t| *t > 0).unwrap_or(100)
}

/// A line of /proc/PID/status in KiB, such as `VmRSS` or `VmHWM` (peak).
pub fn status_kib(pid: u32, key: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status_kib_of(&status, key)
}

pub fn status_kib_of(status: &str, key: &str) -> Option<u64> {
    status.lines().find_map(|line| {
        let value = line.strip_prefix(key)?.strip_prefix(':')?;
        value.trim().strip_suffix("kB")?.trim().parse().ok()
    })
}

/// The `q` quantile (0..=1) of `values` (nearest rank), or 0 when empty.
pub fn quantile(values: &[f64], q: f64) -> f64 {
    if values.is_empty() {
        return 0.0;
    }
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    let rank = (q * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_time_is_read_after_a_command_name_with_spaces() {
        let stat = "4242 (kube apiserver) S 1 4242 4242 0 -1 4194560 500 0 0 0 250 50 0 0 20 0 12 0 100 0 0";
        assert_eq!(cpu_time_of(stat, 100), Some(Duration::from_secs(3)));
        assert_eq!(cpu_time_of("garbage", 100), None);
    }

    #[test]
    fn memory_lines_are_read_in_kib() {
        let status = "Name:\tx\nVmHWM:\t   49152 kB\nVmRSS:\t   22016 kB\n";
        assert_eq!(status_kib_of(status, "VmRSS"), Some(22016));
        assert_eq!(status_kib_of(status, "VmHWM"), Some(49152));
        assert_eq!(status_kib_of(status, "VmSwap"), None);
    }

    #[test]
    fn quantiles_by_nearest_rank() {
        let values: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(quantile(&values, 0.5), 50.0);
        assert_eq!(quantile(&values, 0.95), 95.0);
        assert_eq!(quantile(&values, 0.99), 99.0);
        assert_eq!(quantile(&values, 1.0), 100.0);
        assert_eq!(quantile(&[3.0, 1.0, 2.0], 0.5), 2.0);
        assert_eq!(quantile(&[], 0.5), 0.0);
    }
}
