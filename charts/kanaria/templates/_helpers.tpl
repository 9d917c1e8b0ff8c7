{{/*
The objects' name: fullnameOverride, else <release>-operator when the release name contains
"kanaria" (release "kanaria" gives "kanaria-operator", the name manifests/ uses), else
<release>-kanaria-operator. 52 characters at most, leaving room for "-shard-N".
*/}}
{{- define "kanaria.fullname" -}}
{{- $name := .Values.fullnameOverride -}}
{{- if not $name -}}
{{- $name = ternary (printf "%s-operator" .Release.Name) (printf "%s-kanaria-operator" .Release.Name) (contains "kanaria" .Release.Name) -}}
{{- end -}}
{{- $name | trunc 52 | trimSuffix "-" -}}
{{- end -}}

{{- define "kanaria.serviceAccountName" -}}
{{- .Values.serviceAccount.name | default (include "kanaria.fullname" .) -}}
{{- end -}}

{{/* Labels on every object of the release. */}}
{{- define "kanaria.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
app.kubernetes.io/name: kanaria
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/part-of: kanaria
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end -}}

{{/* Selects the operator's pods of every shard (Service, NetworkPolicy). */}}
{{- define "kanaria.podSelector" -}}
app.kubernetes.io/name: kanaria
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: operator
{{- end -}}

{{/*
One shard's Deployment: its name, selector labels and Lease. Called with
(dict "root" $ "index" I). An unsharded operator is shard 0 of 1: its Deployment keeps its
name and selector when shards grows (a selector cannot change).
*/}}
{{- define "kanaria.deploymentName" -}}
{{- $base := include "kanaria.fullname" .root -}}
{{- if eq (int .index) 0 -}}{{ $base }}{{- else -}}{{ printf "%s-shard-%d" $base (int .index) }}{{- end -}}
{{- end -}}

{{- define "kanaria.selectorLabels" -}}
{{ include "kanaria.podSelector" .root }}
kanaria.io/shard: {{ .index | quote }}
{{- end -}}

{{/* The Lease a shard elects its leader on (see values.yaml, leaderElection.leaseName). */}}
{{- define "kanaria.leaseName" -}}
{{- $root := .root -}}
{{- $base := $root.Values.leaderElection.leaseName | default (include "kanaria.fullname" $root) -}}
{{- if gt (int $root.Values.shards) 1 -}}
{{- printf "%s-shard-%d-of-%d" $base (int .index) (int $root.Values.shards) -}}
{{- else -}}
{{- $base -}}
{{- end -}}
{{- end -}}

{{/* The Lease name the operator picks by itself (controller/state.py). */}}
{{- define "kanaria.defaultLeaseName" -}}
{{- if gt (int .root.Values.shards) 1 -}}
{{- printf "kanaria-operator-shard-%d-of-%d" (int .index) (int .root.Values.shards) -}}
{{- else -}}
kanaria-operator
{{- end -}}
{{- end -}}

{{/* The operator's arguments: which namespaces it watches follows rbac.scope and watchNamespaces. */}}
{{- define "kanaria.args" -}}
{{- $args := list "--liveness" "http://0.0.0.0:8081/healthz" -}}
{{- if .Values.watchNamespaces -}}
{{- range .Values.watchNamespaces -}}{{- $args = concat $args (list "--namespace" .) -}}{{- end -}}
{{- else if eq .Values.rbac.scope "namespace" -}}
{{- $args = concat $args (list "--namespace" "$(KANARIA_NAMESPACE)") -}}
{{- end -}}
{{- concat $args .Values.extraArgs | toJson -}}
{{- end -}}

{{/*
The rules a namespace-scoped and a cluster-wide operator share: everything it does to the
objects of a watched namespace. Each rule says why it is needed. Deliberately absent: secrets
(the operator never reads credentials), pods/exec, pods/attach, and any write to CRDs, RBAC or
namespaces. tests/unit/test_chart.py keeps these equal to manifests/.
*/}}
{{- define "kanaria.rules.namespaced" -}}
# Watch ModelDeployments and record kopf's progress/finalizer annotations on them.
- apiGroups: ["kanaria.io"]
  resources: ["modeldeployments"]
  verbs: ["get", "list", "watch", "patch", "update"]
# Owner references with blockOwnerDeletion on the revisions' Deployments and Services.
- apiGroups: ["kanaria.io"]
  resources: ["modeldeployments/finalizers"]
  verbs: ["update"]
# Write phase, weights, verdicts and history to the status subresource.
- apiGroups: ["kanaria.io"]
  resources: ["modeldeployments/status"]
  verbs: ["get", "patch", "update"]
# Run one Deployment per model revision (stable, canary, challenger, shadow).
- apiGroups: ["apps"]
  resources: ["deployments"]
  verbs: ["get", "list", "watch", "create", "patch", "update", "delete"]
# Scale retired revisions down (and back up on a manual rollback) without touching templates.
- apiGroups: ["apps"]
  resources: ["deployments/scale"]
  verbs: ["get", "patch", "update"]
# Retraining and validation Jobs (spec.retraining, spec.validation): start, follow, stop.
- apiGroups: ["batch"]
  resources: ["jobs"]
  verbs: ["get", "list", "watch", "create", "delete"]
# A finished Job's result is its pod's termination message: read pods, never exec or attach.
- apiGroups: [""]
  resources: ["pods"]
  verbs: ["get", "list"]
# One Service per revision, the backends the traffic router points at.
- apiGroups: [""]
  resources: ["services"]
  verbs: ["get", "list", "watch", "create", "patch", "update", "delete"]
# Kubernetes Events on ModelDeployments, through both Events APIs.
- apiGroups: ["", "events.k8s.io"]
  resources: ["events"]
  verbs: ["create", "patch"]
# Gateway API router: set backend weights on HTTPRoutes.
- apiGroups: ["gateway.networking.k8s.io"]
  resources: ["httproutes"]
  verbs: ["get", "list", "watch", "create", "patch", "update"]
# Inference Extension router (spec.traffic.gatewayAPI.inferencePool): one InferencePool per
# revision, written with server-side apply and deleted with its revision.
- apiGroups: ["inference.networking.k8s.io"]
  resources: ["inferencepools"]
  verbs: ["create", "patch", "delete"]
# Adapter rollouts: the weights of the InferenceModelRewrite Kanaria owns, read back each cycle.
- apiGroups: ["inference.networking.x-k8s.io"]
  resources: ["inferencemodelrewrites"]
  verbs: ["get", "list", "watch", "create", "patch"]
# Istio router: set route weights and mirroring on VirtualServices.
- apiGroups: ["networking.istio.io"]
  resources: ["virtualservices"]
  verbs: ["get", "list", "watch", "create", "patch", "update"]
{{- end -}}

{{/* Leader election between replicas, on a Lease in the release namespace. */}}
{{- define "kanaria.rules.leases" -}}
- apiGroups: ["coordination.k8s.io"]
  resources: ["leases"]
  verbs: ["get", "list", "watch", "create", "update", "patch"]
{{- end -}}
