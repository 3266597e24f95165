{{/* Names and labels, as `helm create` makes them. */}}
{{- define "squall.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "squall.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{- define "squall.selectorLabels" -}}
app.kubernetes.io/name: {{ include "squall.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "squall.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{ include "squall.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{/* The Secret holding the root key pair: the user's own, or the chart's. */}}
{{- define "squall.credentialsSecretName" -}}
{{- .Values.rootCredentials.existingSecret | default (printf "%s-root" (include "squall.fullname" .)) }}
{{- end }}

{{/* The Secret holding the metrics bearer token: the user's own, or the chart's. */}}
{{- define "squall.metricsSecretName" -}}
{{- .Values.metrics.token.existingSecret | default (printf "%s-metrics" (include "squall.fullname" .)) }}
{{- end }}

{{/* HTTP or HTTPS: what the probes and the ServiceMonitor speak. */}}
{{- define "squall.scheme" -}}
{{- if .Values.tls.enabled }}HTTPS{{ else }}HTTP{{ end }}
{{- end }}

{{- define "squall.encryptionSecretName" -}}
{{- .Values.encryption.existingSecret | default (printf "%s-encryption" (include "squall.fullname" .)) }}
{{- end }}

{{- define "squall.encryptionSecretKey" -}}
{{- if .Values.encryption.existingSecret }}{{ .Values.encryption.existingSecretKey }}{{ else }}key{{ end }}
{{- end }}

{{- define "squall.metricsSecretKey" -}}
{{- if .Values.metrics.token.existingSecret }}{{ .Values.metrics.token.existingSecretKey }}{{ else }}token{{ end }}
{{- end }}

{{/* The ConfigMap of function definitions ("" when there is none). */}}
{{- define "squall.functionsConfigMapName" -}}
{{- if .Values.functionsConfigMap }}{{ .Values.functionsConfigMap }}
{{- else if .Values.functions }}{{ printf "%s-functions" (include "squall.fullname" .) }}
{{- end }}
{{- end }}

{{/*
A secret value that is generated once and then kept: the value given, else what the
Secret already in the cluster holds (lookup; empty under `helm template`), else a new
random one. Arguments: (list $ secretName key givenValue generatedLength).
*/}}
{{- define "squall.keptSecretValue" -}}
{{- $root := index . 0 }}
{{- $secretName := index . 1 }}
{{- $key := index . 2 }}
{{- $given := index . 3 }}
{{- $length := index . 4 }}
{{- if $given }}
{{- $given }}
{{- else }}
{{- $existing := lookup "v1" "Secret" $root.Release.Namespace $secretName }}
{{- $kept := "" }}
{{- if and $existing $existing.data }}
{{- $kept = index $existing.data $key | default "" }}
{{- end }}
{{- if $kept }}
{{- $kept | b64dec }}
{{- else if eq $key "SQUALL_ROOT_USER" }}
{{- randAlphaNum $length | upper }}
{{- else }}
{{- randAlphaNum $length }}
{{- end }}
{{- end }}
{{- end }}

{{/*
Checks that stop an install that could not run, with a message (instead of a pod in a
crash loop). squall serve makes the same checks at start-up.
*/}}
{{- define "squall.validate" -}}
{{- if .Values.cluster.enabled }}
{{- include "squall.validateCluster" . }}
{{- end }}
{{- $devUser := "squall-dev" }}
{{- $devPassword := "squall-dev-secret-change-me" }}
{{- if or (eq .Values.rootCredentials.user $devUser) (eq .Values.rootCredentials.password $devPassword) }}
{{- fail "rootCredentials: the development key pair is refused off loopback; set your own or leave them empty to generate one" }}
{{- end }}
{{- if and .Values.rootCredentials.password (lt (len .Values.rootCredentials.password) 16) }}
{{- fail "rootCredentials.password: at least 16 characters, please" }}
{{- end }}
{{- if and .Values.metrics.token.enabled .Values.metrics.token.value (lt (len .Values.metrics.token.value) 16) }}
{{- fail "metrics.token.value: at least 16 characters (squall serve refuses a shorter token)" }}
{{- end }}
{{- if and .Values.metrics.serviceMonitor.enabled (not .Values.metrics.token.enabled) (not .Values.metrics.public) }}
{{- fail "metrics.serviceMonitor needs metrics.token.enabled or metrics.public: Prometheus cannot sign with SigV4" }}
{{- end }}
{{- if and .Values.tls.enabled (not .Values.tls.secretName) }}
{{- fail "tls.enabled needs tls.secretName: a kubernetes.io/tls Secret with tls.crt and tls.key" }}
{{- end }}
{{- if and .Values.functions .Values.functionsConfigMap }}
{{- fail "set functions or functionsConfigMap, not both" }}
{{- end }}
{{- range $name, $definition := .Values.functions }}
{{- if or (not (regexMatch "^[A-Za-z0-9][A-Za-z0-9_.-]*$" $name)) (gt (len $name) 64) }}
{{- fail (printf "functions: %q is not a function name (letters, digits, '_', '.', '-', at most 64 characters)" $name) }}
{{- end }}
{{- end }}
{{- if gt (len .Values.webhooks) 100 }}
{{- fail "webhooks: at most 100" }}
{{- end }}
{{- range $id, $url := .Values.webhooks }}
{{- if or (not (regexMatch "^[A-Za-z0-9_.-]{1,64}$" $id)) }}
{{- fail (printf "webhooks: ID %q must be 1-64 letters, digits, '_', '.' or '-'" $id) }}
{{- end }}
{{- if not (regexMatch "^https?://" (toString $url)) }}
{{- fail (printf "webhooks: %s: URL must be http:// or https://" $id) }}
{{- end }}
{{- end }}
{{- end }}

{{/* Cluster mode (cluster.enabled): names, the cluster file, its checks. */}}
{{- define "squall.clusterSecretName" -}}
{{- .Values.cluster.secret.existingSecret | default (printf "%s-cluster" (include "squall.fullname" .)) }}
{{- end }}

{{- define "squall.clusterSecretKey" -}}
{{- if .Values.cluster.secret.existingSecret }}{{ .Values.cluster.secret.existingSecretKey }}{{ else }}secret{{ end }}
{{- end }}

{{/* The nodes' governing (headless) Service: their stable DNS names. */}}
{{- define "squall.nodesServiceName" -}}
{{- printf "%s-nodes" (include "squall.fullname" .) }}
{{- end }}

{{/* The node StatefulSet; its pods are <this>-0 .. <this>-(N-1), and so are the node ids. */}}
{{- define "squall.nodeName" -}}
{{- printf "%s-node" (include "squall.fullname" .) }}
{{- end }}

{{/*
The cluster file (docs/cluster.md): node i is the pod <release>-squall-node-i, its id its
pod name (squall node gets it from the downward API), its addresses its stable DNS name.
Written by hand, not with toJson, so the nodes stay in ordinal order (the file's order
decides the shards' homes). No secret in it: SQUALL_CLUSTER_SECRET comes from the Secret.
*/}}
{{- define "squall.clusterFile" -}}
{{- $node := include "squall.nodeName" . }}
{{- $domain := printf "%s.%s.svc.%s" (include "squall.nodesServiceName" .) .Release.Namespace .Values.cluster.clusterDomain }}
{{- $count := int .Values.cluster.nodes }}
{
  "nodes": {
{{- range $i := until $count }}
    {{ printf "%s-%d" $node $i | quote }}: {"address": {{ printf "%s-%d.%s:%d" $node $i $domain (int $.Values.cluster.storagePort) | quote }}, "raft": {{ printf "%s-%d.%s:%d" $node $i $domain (int $.Values.cluster.raftPort) | quote }}}{{ if lt (add1 $i) $count }},{{ end }}
{{- end }}
  },
  "shards": {{ int .Values.cluster.shards }},
  "replication_factor": {{ int .Values.cluster.replicationFactor }}
}
{{- end }}

{{/*
What a cluster refuses (squall serve --cluster refuses the same flags; docs/cluster.md),
and the bounds storage/cluster_config.py checks.
*/}}
{{/* "true" when the value is a whole number (YAML gives float64, --set int64), else "". */}}
{{- define "squall.isWholeNumber" -}}
{{- if or (kindIs "int64" .) (kindIs "int" .) }}true
{{- else if kindIs "float64" . }}{{ if eq (float64 (int .)) . }}true{{ end }}
{{- end }}
{{- end }}

{{- define "squall.validateCluster" -}}
{{- $nodes := .Values.cluster.nodes }}
{{- if or (not (include "squall.isWholeNumber" $nodes)) (lt (int $nodes) 1) (gt (int $nodes) 64) }}
{{- fail "cluster.nodes: a whole number of nodes, 1..64 (3 or more to survive the loss of one)" }}
{{- end }}
{{- $shards := .Values.cluster.shards }}
{{- if or (not (include "squall.isWholeNumber" $shards)) (lt (int $shards) 1) (gt (int $shards) 256) }}
{{- fail "cluster.shards: a whole number, 1..256" }}
{{- end }}
{{- $factor := .Values.cluster.replicationFactor }}
{{- if or (not (include "squall.isWholeNumber" $factor)) (lt (int $factor) 1) (gt (int $factor) (int $nodes)) }}
{{- fail (printf "cluster.replicationFactor: a whole number, 1..cluster.nodes (%d)" (int $nodes)) }}
{{- end }}
{{- if eq (int .Values.cluster.storagePort) (int .Values.cluster.raftPort) }}
{{- fail "cluster.storagePort and cluster.raftPort must differ" }}
{{- end }}
{{- if and .Values.cluster.secret.value (lt (len .Values.cluster.secret.value) 16) }}
{{- fail "cluster.secret.value: at least 16 characters (squall refuses a shorter cluster secret)" }}
{{- end }}
{{- $refused := list }}
{{- if or .Values.functions .Values.functionsConfigMap }}{{ $refused = append $refused "functions/functionsConfigMap (pre-commit functions)" }}{{ end }}
{{- if .Values.webhooks }}{{ $refused = append $refused "webhooks (bucket notifications)" }}{{ end }}
{{- if .Values.encryption.enabled }}{{ $refused = append $refused "encryption.enabled (encryption at rest)" }}{{ end }}
{{- if .Values.volatile }}{{ $refused = append $refused "volatile" }}{{ end }}
{{- if .Values.backup.schedule }}{{ $refused = append $refused "backup.schedule (squall backup copies one store, not a cluster)" }}{{ end }}
{{- if $refused }}
{{- fail (printf "cluster.enabled: a replicated cluster does not run %s yet (docs/cluster.md, \"What a cluster does not do yet\"); turn them off" (join ", " $refused)) }}
{{- end }}
{{- end }}
