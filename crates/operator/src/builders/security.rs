//! The security contexts every pod the operator creates runs under: the
//! `restricted` Pod Security Standard.

use k8s_openapi::api::core::v1::{
    Capabilities, PodSecurityContext, SeccompProfile, SecurityContext,
};

fn runtime_default() -> SeccompProfile {
    SeccompProfile {
        type_: "RuntimeDefault".into(),
        ..Default::default()
    }
}

/// A pod running as `uid` (the official images' user), with the runtime's
/// default seccomp profile.
pub fn restricted_pod(uid: i64) -> PodSecurityContext {
    PodSecurityContext {
        run_as_non_root: Some(true),
        run_as_user: Some(uid),
        run_as_group: Some(uid),
        seccomp_profile: Some(runtime_default()),
        ..Default::default()
    }
}

/// A container with no privilege escalation and every capability dropped.
pub fn restricted_container() -> SecurityContext {
    SecurityContext {
        allow_privilege_escalation: Some(false),
        privileged: Some(false),
        run_as_non_root: Some(true),
        capabilities: Some(Capabilities {
            drop: Some(vec!["ALL".into()]),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// [`restricted_container`] that also names the seccomp profile itself.
pub fn restricted_container_with_seccomp() -> SecurityContext {
    SecurityContext {
        seccomp_profile: Some(runtime_default()),
        ..restricted_container()
    }
}
