{{- define "onceflow.image" -}}
{{ .Values.image.repository }}:{{ .Values.image.tag | default .Chart.AppVersion }}
{{- end -}}

{{- define "onceflow.labels" -}}
app.kubernetes.io/name: onceflow-operator
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/part-of: onceflow-control-plane
helm.sh/chart: {{ .Chart.Name }}-{{ .Chart.Version }}
{{- end -}}

{{/* The operator's rights on objects in the namespaces it watches (same as manifests/base). */}}
{{- define "onceflow.namespacedRules" -}}
- apiGroups: [onceflow.io]
  resources: [connectors, integrations, syncpolicies]
  verbs: [get, list, watch, patch, update]
- apiGroups: [onceflow.io]
  resources: [connectors/status, integrations/status, syncpolicies/status]
  verbs: [get, patch, update]
- apiGroups: [apps]
  resources: [deployments, controllerrevisions]
  verbs: [get, list, watch, create, patch, update, delete]
- apiGroups: [batch]
  resources: [cronjobs]
  verbs: [get, list, watch, create, patch, update, delete]
- apiGroups: [""]
  resources: [configmaps, services]
  verbs: [get, list, watch, create, patch, update, delete]
- apiGroups: [""]
  resources: [secrets]
  {{- if or .Values.nats.jwt.secret (and .Values.tracing.otlpEndpoint .Values.tracing.hashBusinessKeys .Values.tracing.hashKeySecret) }}
  # get: read one by one; create + patch: each namespace's onceflow-nats Secret (its NATS user)
  # and onceflow-trace Secret (its key for hashing business keys in spans).
  verbs: [get, create, patch]
  {{- else }}
  verbs: [get]
  {{- end }}
- apiGroups: ["", events.k8s.io]
  resources: [events]
  verbs: [create, patch]
{{- end -}}

{{- define "onceflow.consoleLabels" -}}
app.kubernetes.io/name: onceflow-console
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/part-of: onceflow-control-plane
helm.sh/chart: {{ .Chart.Name }}-{{ .Chart.Version }}
{{- end -}}
