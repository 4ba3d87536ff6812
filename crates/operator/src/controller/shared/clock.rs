//! The time the controllers stamp on conditions and status.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

/// Now, as a Kubernetes timestamp.
pub(crate) fn now() -> Time {
    Time(jiff::Timestamp::now())
}

/// How long from `since` to `now` (zero when `since` is later, as a clock
/// skew between writers can make it).
pub(crate) fn elapsed(since: &Time, now: &Time) -> std::time::Duration {
    std::time::Duration::try_from(now.0.duration_since(since.0)).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn elapsed_is_never_negative() {
        let at = |s| Time(jiff::Timestamp::from_second(s).unwrap());
        assert_eq!(elapsed(&at(100), &at(130)).as_secs(), 30);
        assert_eq!(elapsed(&at(130), &at(100)).as_secs(), 0);
    }
}
