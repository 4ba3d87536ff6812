//! References from one object of this API to another.

use kube::KubeSchema;
use serde::{Deserialize, Serialize};

/// Names the `Database`, in the same namespace, that an object belongs to.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, KubeSchema)]
pub struct DatabaseRef {
    /// Name of the Database in this object's namespace.
    #[schemars(length(min = 1, max = 63))]
    pub name: String,
}

/// Names a key in a Secret in the same namespace.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, KubeSchema)]
pub struct SecretKeyRef {
    /// Name of the Secret.
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
    /// Key inside the Secret.
    #[schemars(length(min = 1, max = 253))]
    pub key: String,
}
