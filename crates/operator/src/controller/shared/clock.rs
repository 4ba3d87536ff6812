//! The time the controllers stamp on conditions and status.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

/// Now, as a Kubernetes timestamp.
pub(crate) fn now() -> Time {
    Time(jiff::Timestamp::now())
}
