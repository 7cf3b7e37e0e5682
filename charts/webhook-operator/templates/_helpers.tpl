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
The NATS authentication Secrets of a role, as YAML (read with fromYaml): router.nats for the
routers when any is set, otherwise nats; at most one of credentialsSecret, nkeySecret,
userSecret and tokenSecret (the binary refuses two methods at once). Call with (list . "router").
*/}}
{{- define "webhook-operator.natsAuth" -}}
{{- $root := index . 0 }}
{{- $auth := pick $root.Values.nats "credentialsSecret" "nkeySecret" "userSecret" "tokenSecret" }}
{{- if eq (index . 1) "router" }}
{{- $r := $root.Values.router.nats }}
{{- if or $r.credentialsSecret $r.nkeySecret $r.userSecret $r.tokenSecret }}
{{- $auth = $r }}
{{- end }}
{{- end }}
{{- if gt (len (compact (list $auth.credentialsSecret $auth.nkeySecret $auth.userSecret $auth.tokenSecret))) 1 }}
{{- fail "set at most one of credentialsSecret, nkeySecret, userSecret and tokenSecret (nats, router.nats, delivery.nats)" }}
{{- end }}
{{- toYaml $auth }}
{{- end }}

{{/*
NATS connection flags of the controller and the routers (files mounted by
"webhook-operator.natsVolumeMounts"). Call with (list . "controller").
*/}}
{{- define "webhook-operator.natsArgs" -}}
{{- $root := index . 0 }}
{{- $n := $root.Values.nats }}
{{- $auth := include "webhook-operator.natsAuth" . | fromYaml }}
- --nats-url={{ $n.url }}
{{- if $auth.credentialsSecret }}
- --nats-creds=/etc/webhook-operator/nats-creds/creds
{{- end }}
{{- if $auth.nkeySecret }}
- --nats-nkey=/etc/webhook-operator/nats-nkey/nkey
{{- end }}
{{- if $n.roleInboxes }}
- --nats-inbox-prefix=_INBOX_{{ index . 1 }}
{{- end }}
{{- if $n.tls.enabled }}
- --nats-tls-ca=/etc/webhook-operator/nats-tls-ca/{{ $n.tls.caKey }}
{{- if $n.tls.clientSecret }}
- --nats-tls-cert=/etc/webhook-operator/nats-tls-client/tls.crt
- --nats-tls-key=/etc/webhook-operator/nats-tls-client/tls.key
{{- end }}
{{- end }}
{{- end }}

{{/* NATS passwords and tokens: environment from Secret keys, never literal values. */}}
{{- define "webhook-operator.natsEnv" -}}
{{- $auth := include "webhook-operator.natsAuth" . | fromYaml }}
{{- with $auth.userSecret }}
- name: NATS_USER
  valueFrom:
    secretKeyRef:
      name: {{ . }}
      key: username
- name: NATS_PASSWORD
  valueFrom:
    secretKeyRef:
      name: {{ . }}
      key: password
{{- end }}
{{- with $auth.tokenSecret }}
- name: NATS_TOKEN
  valueFrom:
    secretKeyRef:
      name: {{ . }}
      key: token
{{- end }}
{{- end }}

{{- define "webhook-operator.natsVolumeMounts" -}}
{{- $n := (index . 0).Values.nats }}
{{- $auth := include "webhook-operator.natsAuth" . | fromYaml }}
{{- if $auth.credentialsSecret }}
- name: nats-creds
  mountPath: /etc/webhook-operator/nats-creds
  readOnly: true
{{- end }}
{{- if $auth.nkeySecret }}
- name: nats-nkey
  mountPath: /etc/webhook-operator/nats-nkey
  readOnly: true
{{- end }}
{{- if $n.tls.enabled }}
- name: nats-tls-ca
  mountPath: /etc/webhook-operator/nats-tls-ca
  readOnly: true
{{- if $n.tls.clientSecret }}
- name: nats-tls-client
  mountPath: /etc/webhook-operator/nats-tls-client
  readOnly: true
{{- end }}
{{- end }}
{{- end }}

{{- define "webhook-operator.natsVolumes" -}}
{{- $n := (index . 0).Values.nats }}
{{- $auth := include "webhook-operator.natsAuth" . | fromYaml }}
{{- with $auth.credentialsSecret }}
- name: nats-creds
  secret:
    secretName: {{ . }}
    items:
      - key: creds
        path: creds
{{- end }}
{{- with $auth.nkeySecret }}
- name: nats-nkey
  secret:
    secretName: {{ . }}
    items:
      - key: nkey
        path: nkey
{{- end }}
{{- if $n.tls.enabled }}
- name: nats-tls-ca
  secret:
    secretName: {{ required "nats.tls.caSecret is required when nats.tls.enabled is true" $n.tls.caSecret }}
    items:
      - key: {{ $n.tls.caKey }}
        path: {{ $n.tls.caKey }}
{{- if $n.tls.clientSecret }}
- name: nats-tls-client
  secret:
    secretName: {{ $n.tls.clientSecret }}
    items:
      - key: tls.crt
        path: tls.crt
      - key: tls.key
        path: tls.key
{{- end }}
{{- end }}
{{- end }}

{{/*
The controller's flags for the NATS identity and TLS of the delivery pods it creates: the
delivery.nats.* Secrets (per tenant with {tenant}) or else the nats.* ones, and nats.tls.
*/}}
{{- define "webhook-operator.deliverNatsArgs" -}}
{{- $n := .Values.nats }}
{{- $d := .Values.delivery.nats }}
{{- $auth := $n }}
{{- if or $d.credentialsSecret $d.nkeySecret $d.userSecret $d.tokenSecret }}
{{- $auth = $d }}
{{- end }}
{{- if gt (len (compact (list $auth.credentialsSecret $auth.nkeySecret $auth.userSecret $auth.tokenSecret))) 1 }}
{{- fail "set at most one of credentialsSecret, nkeySecret, userSecret and tokenSecret (nats, router.nats, delivery.nats)" }}
{{- end }}
{{- with $auth.credentialsSecret }}
- --deliver-nats-creds-secret={{ . }}
{{- end }}
{{- with $auth.nkeySecret }}
- --deliver-nats-nkey-secret={{ . }}
{{- end }}
{{- with $auth.userSecret }}
- --deliver-nats-user-secret={{ . }}
{{- end }}
{{- with $auth.tokenSecret }}
- --deliver-nats-token-secret={{ . }}
{{- end }}
{{- if $n.roleInboxes }}
- --deliver-nats-inbox-prefix=_INBOX_deliver_{tenant}
{{- end }}
{{- if $n.tls.enabled }}
- --deliver-nats-tls-ca-secret={{ $n.tls.caSecret }}
- --deliver-nats-tls-ca-key={{ $n.tls.caKey }}
{{- with $n.tls.clientSecret }}
- --deliver-nats-tls-client-secret={{ . }}
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
