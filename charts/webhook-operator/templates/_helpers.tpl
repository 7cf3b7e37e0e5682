{{/* Chart name, overridable. */}}
{{- define "webhook-operator.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Prefix of every object name: the release name, plus the chart name unless it is in it. */}}
{{- define "webhook-operator.fullname" -}}
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

{{/* Name of a component's objects: <fullname>-<component>. Call with (list . "controller"). */}}
{{- define "webhook-operator.componentName" -}}
{{- $root := index . 0 }}
{{- printf "%s-%s" (include "webhook-operator.fullname" $root | trunc 52 | trimSuffix "-") (index . 1) }}
{{- end }}

{{- define "webhook-operator.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Labels of every object. */}}
{{- define "webhook-operator.labels" -}}
helm.sh/chart: {{ include "webhook-operator.chart" . }}
app.kubernetes.io/name: {{ include "webhook-operator.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: webhook-operator
{{- end }}

{{/* Selector labels of a component. Call with (list . "controller"). */}}
{{- define "webhook-operator.selectorLabels" -}}
{{- $root := index . 0 -}}
app.kubernetes.io/name: {{ include "webhook-operator.name" $root }}
app.kubernetes.io/instance: {{ $root.Release.Name }}
app.kubernetes.io/component: {{ index . 1 }}
{{- end }}

{{/* Labels of a component's objects. Call with (list . "controller"). */}}
{{- define "webhook-operator.componentLabels" -}}
{{ include "webhook-operator.labels" (index . 0) }}
app.kubernetes.io/component: {{ index . 1 }}
{{- end }}

{{/* The image of the controller and the routers. */}}
{{- define "webhook-operator.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}

{{/* The image of the delivery pods: delivery.image, falling back to the operator's own. */}}
{{- define "webhook-operator.deliveryImage" -}}
{{- $repository := default .Values.image.repository .Values.delivery.image.repository }}
{{- $tag := default (default .Chart.AppVersion .Values.image.tag) .Values.delivery.image.tag }}
{{- printf "%s:%s" $repository $tag }}
{{- end }}

{{/*
NATS connection flags shared by the controller and the routers (files mounted by
"webhook-operator.natsVolumeMounts").
*/}}
{{- define "webhook-operator.natsArgs" -}}
- --nats-url={{ .Values.nats.url }}
{{- if .Values.nats.credentialsSecret }}
- --nats-creds=/etc/webhook-operator/nats-creds/creds
{{- end }}
{{- if .Values.nats.tls.enabled }}
- --nats-tls-ca=/etc/webhook-operator/nats-tls-ca/{{ .Values.nats.tls.caKey }}
{{- if .Values.nats.tls.clientSecret }}
- --nats-tls-cert=/etc/webhook-operator/nats-tls-client/tls.crt
- --nats-tls-key=/etc/webhook-operator/nats-tls-client/tls.key
{{- end }}
{{- end }}
{{- end }}

{{- define "webhook-operator.natsVolumeMounts" -}}
{{- if .Values.nats.credentialsSecret }}
- name: nats-creds
  mountPath: /etc/webhook-operator/nats-creds
  readOnly: true
{{- end }}
{{- if .Values.nats.tls.enabled }}
- name: nats-tls-ca
  mountPath: /etc/webhook-operator/nats-tls-ca
  readOnly: true
{{- if .Values.nats.tls.clientSecret }}
- name: nats-tls-client
  mountPath: /etc/webhook-operator/nats-tls-client
  readOnly: true
{{- end }}
{{- end }}
{{- end }}

{{- define "webhook-operator.natsVolumes" -}}
{{- if .Values.nats.credentialsSecret }}
- name: nats-creds
  secret:
    secretName: {{ .Values.nats.credentialsSecret }}
    items:
      - key: creds
        path: creds
{{- end }}
{{- if .Values.nats.tls.enabled }}
- name: nats-tls-ca
  secret:
    secretName: {{ required "nats.tls.caSecret is required when nats.tls.enabled is true" .Values.nats.tls.caSecret }}
    items:
      - key: {{ .Values.nats.tls.caKey }}
        path: {{ .Values.nats.tls.caKey }}
{{- if .Values.nats.tls.clientSecret }}
- name: nats-tls-client
  secret:
    secretName: {{ .Values.nats.tls.clientSecret }}
    items:
      - key: tls.crt
        path: tls.crt
      - key: tls.key
        path: tls.key
{{- end }}
{{- end }}
{{- end }}

{{/* The admin server's probes (port named "admin"). */}}
{{- define "webhook-operator.probes" -}}
livenessProbe:
  httpGet:
    path: /healthz
    port: admin
  periodSeconds: 10
readinessProbe:
  httpGet:
    path: /readyz
    port: admin
  periodSeconds: 5
{{- end }}

{{/*
A component's affinity: the value given, or by default a preference for spreading its replicas
over nodes. Call with (list . "controller" .Values.controller.affinity).
*/}}
{{- define "webhook-operator.affinity" -}}
{{- $given := index . 2 -}}
{{- if $given }}
{{- toYaml $given }}
{{- else }}
podAntiAffinity:
  preferredDuringSchedulingIgnoredDuringExecution:
    - weight: 100
      podAffinityTerm:
        topologyKey: kubernetes.io/hostname
        labelSelector:
          matchLabels:
            {{- include "webhook-operator.selectorLabels" (list (index . 0) (index . 1)) | nindent 12 }}
{{- end }}
{{- end }}
