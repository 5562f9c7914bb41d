{{/* Names ------------------------------------------------------------------------------ */}}

{{- define "coachflow.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* The release's full name, short enough to take the longest suffix (-headless) and stay a
valid 63-character DNS label. */}}
{{- define "coachflow.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 54 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 54 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 54 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{- define "coachflow.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "coachflow.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "coachflow.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* Labels ----------------------------------------------------------------------------- */}}

{{- define "coachflow.labels" -}}
helm.sh/chart: {{ include "coachflow.chart" . }}
app.kubernetes.io/name: {{ include "coachflow.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ (.Values.image.tag | default .Chart.AppVersion) | trunc 63 | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: coachflow
{{- end }}

{{/* The server's pods. The migration Job's pods carry component=migration, so no Service,
PodDisruptionBudget or NetworkPolicy of the server selects them. */}}
{{- define "coachflow.selectorLabels" -}}
app.kubernetes.io/name: {{ include "coachflow.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: server
{{- end }}

{{/* Image and ports ------------------------------------------------------------------- */}}

{{- define "coachflow.image" -}}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository (.Values.image.tag | default .Chart.AppVersion) }}
{{- end }}
{{- end }}

{{/* The port of a listen address ("0.0.0.0:50051", "[::]:50051"). */}}
{{- define "coachflow.port" -}}
{{- splitList ":" . | last | int }}
{{- end }}

{{- define "coachflow.grpcPort" -}}
{{- include "coachflow.port" .Values.config.grpc.listen }}
{{- end }}

{{- define "coachflow.metricsOn" -}}
{{- if (dig "metrics" "listen" "" .Values.config) }}true{{ end }}
{{- end }}

{{- define "coachflow.metricsPort" -}}
{{- include "coachflow.port" .Values.config.metrics.listen }}
{{- end }}

{{/* Seconds of a duration as the service writes them (500ms, 30s, 10m, 24h, 7d), rounded up. */}}
{{- define "coachflow.seconds" -}}
{{- $number := regexFind "^[0-9]+" . -}}
{{- $unit := trimPrefix $number . -}}
{{- $n := $number | int64 -}}
{{- if eq $unit "ms" }}{{ div (add $n 999) 1000 }}
{{- else if eq $unit "s" }}{{ $n }}
{{- else if eq $unit "m" }}{{ mul $n 60 }}
{{- else if eq $unit "h" }}{{ mul $n 3600 }}
{{- else if eq $unit "d" }}{{ mul $n 86400 }}
{{- else }}{{ fail (printf "'%s' is not a duration like 500ms, 30s, 10m, 24h or 7d" .) }}
{{- end }}
{{- end }}

{{/* After SIGTERM: in-flight requests get shutdown.grace, then the event relay gets up to
shutdown.grace again to confirm what they committed (crates/coachflow-server/src/serve.rs),
plus the preStop sleep before SIGTERM and a margin for closing the database. */}}
{{- define "coachflow.terminationGracePeriodSeconds" -}}
{{- $grace := include "coachflow.seconds" .Values.config.shutdown.grace | int64 -}}
{{- $drain := include "coachflow.seconds" (.Values.config.shutdown.drain_delay | default "0s") | int64 -}}
{{- add .Values.preStopSleepSeconds $drain (mul 2 $grace) .Values.terminationGraceMarginSeconds }}
{{- end }}

{{/* The Secret with the key-encryption keys (content.kek), or "". */}}
{{- define "coachflow.kekSecret" -}}
{{- with .Values.content }}{{ .existingSecret }}{{ end }}
{{- end }}

{{/* Storage ------------------------------------------------------------------------------ */}}

{{/* "true" when the service runs on the embedded SQLite file (development mode only). */}}
{{- define "coachflow.sqlite" -}}
{{- if not .Values.database.existingSecret }}true{{ end }}
{{- end }}

{{- define "coachflow.migrationJob" -}}
{{- if and .Values.migration.enabled (not (include "coachflow.sqlite" .)) }}true{{ end }}
{{- end }}

{{/* The configuration file ------------------------------------------------------------ */}}

{{- define "coachflow.tlsDir" -}}/etc/coachflow/tls{{- end }}
{{- define "coachflow.clientCADir" -}}/etc/coachflow/client-ca{{- end }}
{{- define "coachflow.jwksDir" -}}/etc/coachflow/jwks{{- end }}
{{- define "coachflow.configPath" -}}/etc/coachflow/config/config.yaml{{- end }}
{{- define "coachflow.dataDir" -}}/var/lib/coachflow{{- end }}

{{/* config.yaml: .Values.config with what the chart derives from the mounted Secrets. */}}
{{- define "coachflow.configFile" -}}
{{- $config := deepCopy .Values.config -}}
{{- if include "coachflow.sqlite" . -}}
{{- $database := get $config "database" | default dict -}}
{{- $_ := set $database "url" (printf "sqlite://%s/coachflow.db" (include "coachflow.dataDir" .)) -}}
{{- $_ := set $config "database" $database -}}
{{- end -}}
{{- if include "coachflow.migrationJob" . -}}
{{- /* The Job migrates before the pods start; replicas never race a schema change, and a
       replica that finds the schema behind it stays not ready. */ -}}
{{- $database := get $config "database" | default dict -}}
{{- $_ := set $database "migrate" false -}}
{{- $_ := set $config "database" $database -}}
{{- end -}}
{{- if .Values.authJwks.existingSecret -}}
{{- $_ := set $config.auth "jwks" (printf "file://%s/%s" (include "coachflow.jwksDir" .) .Values.authJwks.key) -}}
{{- end -}}
{{- if .Values.tls.enabled -}}
{{- $tls := dict "cert" (printf "%s/%s" (include "coachflow.tlsDir" .) .Values.tls.certKey) "key" (printf "%s/%s" (include "coachflow.tlsDir" .) .Values.tls.keyKey) -}}
{{- if .Values.tls.clientCA.enabled -}}
{{- $_ := set $tls "client_ca" (printf "%s/%s" (include "coachflow.clientCADir" .) .Values.tls.clientCA.key) -}}
{{- end -}}
{{- $_ := set $config "server" (dict "tls" $tls) -}}
{{- end -}}
{{- toYaml $config }}
{{- end }}

{{/* Checks that values.schema.json cannot express. */}}
{{- define "coachflow.validate" -}}
{{- if .Values.autoscaling.enabled }}
{{- if not (or .Values.autoscaling.targetCPUUtilizationPercentage .Values.autoscaling.targetMemoryUtilizationPercentage) }}
{{- fail "autoscaling.enabled needs targetCPUUtilizationPercentage or targetMemoryUtilizationPercentage" }}
{{- end }}
{{- if gt (int .Values.autoscaling.minReplicas) (int .Values.autoscaling.maxReplicas) }}
{{- fail (printf "autoscaling.minReplicas (%v) is larger than autoscaling.maxReplicas (%v)" .Values.autoscaling.minReplicas .Values.autoscaling.maxReplicas) }}
{{- end }}
{{- end }}
{{- $pdb := .Values.podDisruptionBudget }}
{{- if and $pdb.enabled (hasKey $pdb "minAvailable") (not (kindIs "string" $pdb.minAvailable)) (not (kindIs "invalid" $pdb.minAvailable)) }}
{{- $least := ternary .Values.autoscaling.minReplicas .Values.replicaCount .Values.autoscaling.enabled }}
{{- if ge (int $pdb.minAvailable) (int $least) }}
{{- fail (printf "podDisruptionBudget.minAvailable (%v) leaves no replica of %v to evict: a node drain would wait forever" $pdb.minAvailable $least) }}
{{- end }}
{{- end }}
{{- if and $pdb.enabled (not (hasKey $pdb "minAvailable")) (not (hasKey $pdb "maxUnavailable")) }}
{{- fail "podDisruptionBudget needs maxUnavailable or minAvailable" }}
{{- end }}
{{- if and .Values.tls.enabled (eq .Values.probes.withTLS "grpcTLS") .Values.tls.clientCA.enabled }}
{{- fail "probes.withTLS=grpcTLS cannot pass mutual TLS: the kubelet has no client certificate" }}
{{- end }}
{{- if and .Values.metrics.serviceMonitor.enabled (not (include "coachflow.metricsOn" .)) }}
{{- fail "metrics.serviceMonitor.enabled needs config.metrics.listen" }}
{{- end }}
{{- if and (include "coachflow.kekSecret" .) (dig "content" "kek_file" "" .Values.config) }}
{{- fail "content.existingSecret and config.content.kek_file both give the key-encryption keys: the server takes one or the other" }}
{{- end }}
{{- $tenants := dig "retention" "tenants" "" .Values.config | trim }}
{{- if $tenants }}
{{- $parsed := fromJson $tenants }}
{{- if and (hasKey $parsed "Error") (kindIs "string" (get $parsed "Error")) }}
{{- fail (printf "config.retention.tenants is not a JSON object of tenants' policies like {\"acme\": {\"closed_content_after\": \"365d\"}}: %s" $tenants) }}
{{- end }}
{{- end }}
{{- end }}

{{/* The pod's volumes and the container's mounts, shared by the Deployment and the
migration Job (which validates the same configuration, file paths included). */}}
{{- define "coachflow.volumes" -}}
- name: config
  configMap:
    name: {{ .configMap }}
- name: tmp
  emptyDir:
    sizeLimit: 64Mi
{{- if include "coachflow.sqlite" .root }}
- name: data
  emptyDir:
    sizeLimit: 1Gi
{{- end }}
{{- with .root.Values }}
{{- if .authJwks.existingSecret }}
- name: jwks
  secret:
    secretName: {{ .authJwks.existingSecret }}
    defaultMode: 0440
    items:
      - key: {{ .authJwks.key }}
        path: {{ .authJwks.key }}
{{- end }}
{{- if .tls.enabled }}
- name: tls
  secret:
    secretName: {{ .tls.existingSecret }}
    defaultMode: 0440
    items:
      - key: {{ .tls.certKey }}
        path: {{ .tls.certKey }}
      - key: {{ .tls.keyKey }}
        path: {{ .tls.keyKey }}
{{- if .tls.clientCA.enabled }}
- name: client-ca
  secret:
    secretName: {{ .tls.clientCA.existingSecret | default .tls.existingSecret }}
    defaultMode: 0440
    items:
      - key: {{ .tls.clientCA.key }}
        path: {{ .tls.clientCA.key }}
{{- end }}
{{- end }}
{{- with .extraVolumes }}
{{ toYaml . }}
{{- end }}
{{- end }}
{{- end }}

{{- define "coachflow.volumeMounts" -}}
- name: config
  mountPath: {{ include "coachflow.configPath" . | dir }}
  readOnly: true
- name: tmp
  mountPath: /tmp
{{- if include "coachflow.sqlite" . }}
- name: data
  mountPath: {{ include "coachflow.dataDir" . }}
{{- end }}
{{- if .Values.authJwks.existingSecret }}
- name: jwks
  mountPath: {{ include "coachflow.jwksDir" . }}
  readOnly: true
{{- end }}
{{- if .Values.tls.enabled }}
- name: tls
  mountPath: {{ include "coachflow.tlsDir" . }}
  readOnly: true
{{- if .Values.tls.clientCA.enabled }}
- name: client-ca
  mountPath: {{ include "coachflow.clientCADir" . }}
  readOnly: true
{{- end }}
{{- end }}
{{- with .Values.extraVolumeMounts }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{/* Environment: the Secrets' URLs and key-encryption keys, the pod's name as instance_id,
and the listen addresses and log format again: the image sets them as ENV (for `docker run`),
and the environment wins over the configuration file, so the pod sets them to the file's
values. */}}
{{- define "coachflow.env" -}}
- name: COACHFLOW_INSTANCE_ID
  valueFrom:
    fieldRef:
      fieldPath: metadata.name
{{- if .Values.database.existingSecret }}
- name: COACHFLOW_DATABASE_URL
  valueFrom:
    secretKeyRef:
      name: {{ .Values.database.existingSecret }}
      key: {{ .Values.database.existingSecretKey }}
{{- end }}
{{- if .Values.broker.existingSecret }}
- name: COACHFLOW_BROKER_URL
  valueFrom:
    secretKeyRef:
      name: {{ .Values.broker.existingSecret }}
      key: {{ .Values.broker.existingSecretKey }}
{{- end }}
{{- with .Values.content }}
{{- if .existingSecret }}
- name: COACHFLOW_CONTENT_KEK
  valueFrom:
    secretKeyRef:
      name: {{ .existingSecret }}
      key: {{ .existingSecretKey }}
{{- end }}
{{- end }}
- name: COACHFLOW_GRPC_LISTEN
  value: {{ .Values.config.grpc.listen | quote }}
- name: COACHFLOW_METRICS_LISTEN
  value: {{ dig "metrics" "listen" "" .Values.config | quote }}
- name: COACHFLOW_LOG_FORMAT
  value: {{ dig "log" "format" "human" .Values.config | quote }}
{{- with .Values.extraEnv }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{/* The container's security context: not configurable, so it cannot be weakened. */}}
{{- define "coachflow.containerSecurityContext" -}}
allowPrivilegeEscalation: false
readOnlyRootFilesystem: true
runAsNonRoot: true
privileged: false
capabilities:
  drop:
    - ALL
seccompProfile:
  type: RuntimeDefault
{{- end }}

{{- define "coachflow.podSecurityContext" -}}
runAsNonRoot: true
{{- with .Values.podSecurityContext }}
{{- if not (kindIs "invalid" .runAsUser) }}
runAsUser: {{ .runAsUser }}
{{- end }}
{{- if not (kindIs "invalid" .runAsGroup) }}
runAsGroup: {{ .runAsGroup }}
{{- end }}
{{- if not (kindIs "invalid" .fsGroup) }}
fsGroup: {{ .fsGroup }}
{{- end }}
{{- end }}
seccompProfile:
  type: RuntimeDefault
{{- end }}

{{/* Example values still in place (values.yaml ships idp.example.com). */}}
{{- define "coachflow.exampleAuth" -}}
{{- $auth := .Values.config.auth -}}
{{- $found := list -}}
{{- range $key := list "issuer" "audience" "jwks" -}}
{{- if contains "example.com" (get $auth $key | toString) -}}
{{- $found = append $found (printf "config.auth.%s=%s" $key (get $auth $key)) -}}
{{- end -}}
{{- end -}}
{{- if and .Values.authJwks.existingSecret (contains "example.com" ($auth.jwks | toString)) -}}
{{- $found = without $found (printf "config.auth.jwks=%s" $auth.jwks) -}}
{{- end -}}
{{- join ", " $found -}}
{{- end }}
