{{- /* Generated from crates/operator/src/rbac.rs by `make manifests`; do not edit. */ -}}
{{- define "database-operator.clusterRules" -}}
rules:
  # Database: watched; finalizer added and removed; status written.
  - apiGroups: ["example.com"]
    resources: ["databases"]
    verbs: ["get", "list", "watch", "patch"]
  - apiGroups: ["example.com"]
    resources:
      - databases/status
      - databaseusers/status
      - databasebackups/status
      - databasemonitors/status
    verbs: ["patch"]
  # DatabaseMonitor: watched; created for a Database with monitoring (its
  # alerting switch patched), deleted when monitoring is switched off.
  - apiGroups: ["example.com"]
    resources: ["databasemonitors"]
    verbs: ["get", "list", "watch", "create", "patch", "delete"]
  # What a DatabaseMonitor becomes (the dashboard is a ConfigMap, below).
  - apiGroups: ["monitoring.coreos.com"]
    resources: ["servicemonitors"]
    verbs: ["get", "create", "patch"]
  - apiGroups: ["monitoring.coreos.com"]
    resources: ["prometheusrules"]
    verbs: ["get", "create", "patch", "delete"]
  # DatabaseUser: watched; finalizer added and removed.
  - apiGroups: ["example.com"]
    resources: ["databaseusers"]
    verbs: ["get", "list", "watch", "patch"]
  # DatabaseBackup: watched; scheduled runs recorded; retention deletes old
  # records.
  - apiGroups: ["example.com"]
    resources: ["databasebackups"]
    verbs: ["get", "list", "watch", "create", "delete"]
  # The StatefulSet, its ConfigMap and PodDisruptionBudget: applied, cached.
  - apiGroups: ["apps"]
    resources: ["statefulsets"]
    verbs: ["get", "list", "watch", "create", "patch"]
  - apiGroups: [""]
    resources: ["configmaps"]
    verbs: ["get", "list", "watch", "create", "patch"]
  - apiGroups: ["policy"]
    resources: ["poddisruptionbudgets"]
    verbs: ["get", "list", "watch", "create", "patch"]
  # Services: applied; the read-only one deleted when it is no longer
  # wanted.
  - apiGroups: [""]
    resources: ["services"]
    verbs: ["get", "list", "watch", "create", "patch", "delete"]
  # Secrets: the admin Secret and user credentials are created and applied;
  # password Secrets are read; copies in other namespaces are deleted.
  - apiGroups: [""]
    resources: ["secrets"]
    verbs: ["get", "list", "watch", "create", "patch", "delete"]
  # The backup CronJob: applied, deleted when backups are switched off.
  - apiGroups: ["batch"]
    resources: ["cronjobs"]
    verbs: ["get", "list", "watch", "create", "patch", "delete"]
  # Backup Jobs: on-demand ones created; scheduled ones watched.
  - apiGroups: ["batch"]
    resources: ["jobs"]
    verbs: ["get", "list", "watch", "create"]
  # The backup pod's termination message carries the agent's report. A
  # streaming Database's pods carry the role label the operator keeps
  # (patch), and a failed-over primary's pod is deleted so that it restarts
  # as a replica (delete). The operator grants a replicated Database's pods
  # get on their own pods, which it must hold itself (get).
  - apiGroups: [""]
    resources: ["pods"]
    verbs: ["get", "list", "patch", "delete"]
  # A replicated Database's pods read their role and the failover delay
  # through a ServiceAccount of their own, with a Role that may get only the
  # Database's pods and the Database: applied, cached.
  - apiGroups: [""]
    resources: ["serviceaccounts"]
    verbs: ["get", "list", "watch", "create", "patch", "delete"]
  - apiGroups: ["rbac.authorization.k8s.io"]
    resources:
      - roles
      - rolebindings
    verbs: ["get", "list", "watch", "create", "patch", "delete"]
  # A Database's NetworkPolicy: applied, cached, deleted when isolation is
  # switched off.
  - apiGroups: ["networking.k8s.io"]
    resources: ["networkpolicies"]
    verbs: ["get", "list", "watch", "create", "patch", "delete"]
  # Volume claims: grown when spec.storage.size grows, deleted on Delete
  # policy.
  - apiGroups: [""]
    resources: ["persistentvolumeclaims"]
    verbs: ["list", "patch", "delete"]
  # Velero (spec.backup.method velero): Schedules are applied in Velero's
  # namespace, found by label and deleted when no longer wanted.
  - apiGroups: ["velero.io"]
    resources: ["schedules"]
    verbs: ["get", "list", "create", "patch", "delete"]
  # Events for transitions a user should see.
  - apiGroups: ["events.k8s.io"]
    resources: ["events"]
    verbs: ["create", "patch"]
  # Whether Velero's and prometheus-operator's CRDs are installed: the
  # monitor controller watches CRD metadata (all of them, so no
  # resourceNames).
  - apiGroups: ["apiextensions.k8s.io"]
    resources: ["customresourcedefinitions"]
    verbs: ["get", "list", "watch"]
{{- end }}
{{- define "database-operator.namespacedRules" -}}
rules:
  # Database: watched; finalizer added and removed; status written.
  - apiGroups: ["example.com"]
    resources: ["databases"]
    verbs: ["get", "list", "watch", "patch"]
  - apiGroups: ["example.com"]
    resources:
      - databases/status
      - databaseusers/status
      - databasebackups/status
      - databasemonitors/status
    verbs: ["patch"]
  # DatabaseMonitor: watched; created for a Database with monitoring (its
  # alerting switch patched), deleted when monitoring is switched off.
  - apiGroups: ["example.com"]
    resources: ["databasemonitors"]
    verbs: ["get", "list", "watch", "create", "patch", "delete"]
  # What a DatabaseMonitor becomes (the dashboard is a ConfigMap, below).
  - apiGroups: ["monitoring.coreos.com"]
    resources: ["servicemonitors"]
    verbs: ["get", "create", "patch"]
  - apiGroups: ["monitoring.coreos.com"]
    resources: ["prometheusrules"]
    verbs: ["get", "create", "patch", "delete"]
  # DatabaseUser: watched; finalizer added and removed.
  - apiGroups: ["example.com"]
    resources: ["databaseusers"]
    verbs: ["get", "list", "watch", "patch"]
  # DatabaseBackup: watched; scheduled runs recorded; retention deletes old
  # records.
  - apiGroups: ["example.com"]
    resources: ["databasebackups"]
    verbs: ["get", "list", "watch", "create", "delete"]
  # The StatefulSet, its ConfigMap and PodDisruptionBudget: applied, cached.
  - apiGroups: ["apps"]
    resources: ["statefulsets"]
    verbs: ["get", "list", "watch", "create", "patch"]
  - apiGroups: [""]
    resources: ["configmaps"]
    verbs: ["get", "list", "watch", "create", "patch"]
  - apiGroups: ["policy"]
    resources: ["poddisruptionbudgets"]
    verbs: ["get", "list", "watch", "create", "patch"]
  # Services: applied; the read-only one deleted when it is no longer
  # wanted.
  - apiGroups: [""]
    resources: ["services"]
    verbs: ["get", "list", "watch", "create", "patch", "delete"]
  # Secrets: the admin Secret and user credentials are created and applied;
  # password Secrets are read; copies in other namespaces are deleted.
  - apiGroups: [""]
    resources: ["secrets"]
    verbs: ["get", "list", "watch", "create", "patch", "delete"]
  # The backup CronJob: applied, deleted when backups are switched off.
  - apiGroups: ["batch"]
    resources: ["cronjobs"]
    verbs: ["get", "list", "watch", "create", "patch", "delete"]
  # Backup Jobs: on-demand ones created; scheduled ones watched.
  - apiGroups: ["batch"]
    resources: ["jobs"]
    verbs: ["get", "list", "watch", "create"]
  # The backup pod's termination message carries the agent's report. A
  # streaming Database's pods carry the role label the operator keeps
  # (patch), and a failed-over primary's pod is deleted so that it restarts
  # as a replica (delete). The operator grants a replicated Database's pods
  # get on their own pods, which it must hold itself (get).
  - apiGroups: [""]
    resources: ["pods"]
    verbs: ["get", "list", "patch", "delete"]
  # A replicated Database's pods read their role and the failover delay
  # through a ServiceAccount of their own, with a Role that may get only the
  # Database's pods and the Database: applied, cached.
  - apiGroups: [""]
    resources: ["serviceaccounts"]
    verbs: ["get", "list", "watch", "create", "patch", "delete"]
  - apiGroups: ["rbac.authorization.k8s.io"]
    resources:
      - roles
      - rolebindings
    verbs: ["get", "list", "watch", "create", "patch", "delete"]
  # A Database's NetworkPolicy: applied, cached, deleted when isolation is
  # switched off.
  - apiGroups: ["networking.k8s.io"]
    resources: ["networkpolicies"]
    verbs: ["get", "list", "watch", "create", "patch", "delete"]
  # Volume claims: grown when spec.storage.size grows, deleted on Delete
  # policy.
  - apiGroups: [""]
    resources: ["persistentvolumeclaims"]
    verbs: ["list", "patch", "delete"]
  # Velero (spec.backup.method velero): Schedules are applied in Velero's
  # namespace, found by label and deleted when no longer wanted.
  - apiGroups: ["velero.io"]
    resources: ["schedules"]
    verbs: ["get", "list", "create", "patch", "delete"]
  # Events for transitions a user should see.
  - apiGroups: ["events.k8s.io"]
    resources: ["events"]
    verbs: ["create", "patch"]
{{- end }}
{{- define "database-operator.clusterScopedRules" -}}
rules:
  # Whether Velero's and prometheus-operator's CRDs are installed: the
  # monitor controller watches CRD metadata (all of them, so no
  # resourceNames).
  - apiGroups: ["apiextensions.k8s.io"]
    resources: ["customresourcedefinitions"]
    verbs: ["get", "list", "watch"]
{{- end }}
{{- define "database-operator.leaderElectionRules" -}}
rules:
  - apiGroups: ["coordination.k8s.io"]
    resources: ["leases"]
    verbs: ["get", "create", "update"]
{{- end }}
