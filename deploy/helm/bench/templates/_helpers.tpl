{{/* Names: the release's, with "bench" unless the release name holds it already. */}}
{{- define "bench.fullname" -}}
{{- if contains "bench" .Release.Name -}}
{{- .Release.Name | trunc 40 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-bench" .Release.Name | trunc 40 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "bench.selectorLabels" -}}
app.kubernetes.io/name: bench
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "bench.labels" -}}
{{ include "bench.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{- define "bench.image" -}}
{{ printf "%s:%s" .Values.image.repository (.Values.image.tag | default .Chart.AppVersion) }}
{{- end -}}

{{/* One shell word, single-quoted: a value never expands or splits in runs.sh. */}}
{{- define "bench.sh" -}}
'{{ replace "'" "'\\''" (toString .) }}'
{{- end -}}

{{/* Where the mounted files are: the same paths in the agents and the coordinator. */}}
{{- define "bench.secretFile" -}}
/etc/bench/agent-secret/{{ .Values.agentSecret.key }}
{{- end -}}

{{- define "bench.kafkaConfigFile" -}}
{{- if .Values.kafka.clientConfigSecret -}}
/etc/bench/kafka/{{ .Values.kafka.clientConfigKey }}
{{- end -}}
{{- end -}}

{{- define "bench.agentSecretName" -}}
{{- .Values.agentSecret.existingSecret | default (printf "%s-agent-secret" (include "bench.fullname" .)) -}}
{{- end -}}

{{/* A run's placement: its own, else its pattern's in agents.placement. */}}
{{- define "bench.placement" -}}
{{- $placement := .run.placement | default (get .root.Values.agents.placement (toString .run.pattern)) -}}
{{- if not $placement -}}
{{- fail (printf "coordinator.runs[%s]: no placement: set agents.placement.%s or the run's own placement" (toString .run.name) (toString .run.pattern)) -}}
{{- end -}}
{{- toJson $placement -}}
{{- end -}}

{{/* A run's hosts file (bench run --hosts; bench.run.remote.read_placement reads it): each
placement entry stands for `agents` agents alike (default 1), taken in order from agent 0. */}}
{{- define "bench.hostsFile" -}}
{{- $root := .root -}}
{{- $fullname := include "bench.fullname" $root -}}
{{- $hosts := list -}}
{{- range $entry := include "bench.placement" . | fromJsonArray -}}
{{- range until (int (default 1 $entry.agents)) -}}
{{- $pod := printf "%s-agent-%d" $fullname (len $hosts) -}}
{{- $address := printf "%s.%s-agent.%s.svc.%s:%d" $pod $fullname $root.Release.Namespace $root.Values.clusterDomain (int $root.Values.agents.port) -}}
{{- $host := dict "name" $pod "agent" $address "services" ($entry.services | default dict) -}}
{{- if $entry.load_workers -}}
{{- $_ := set $host "load_workers" $entry.load_workers -}}
{{- end -}}
{{- if $entry.brokers -}}
{{- if $root.Values.kafka.bootstrapServers -}}
{{- fail (printf "coordinator.runs[%s]: its placement starts brokers on agents: set kafka.bootstrapServers to \"\" (a run on its own cluster takes no other)" (toString $.run.name)) -}}
{{- end -}}
{{- $_ := set $host "brokers" $entry.brokers -}}
{{- end -}}
{{- $hosts = append $hosts $host -}}
{{- end -}}
{{- end -}}
{{- toYaml (dict "secret_file" (include "bench.secretFile" $root) "hosts" $hosts) -}}
{{- end -}}

{{/* Whether the runs start their own brokers on the agents (placement entries' `brokers`):
then no bootstrap address is given, and the release's pods reach the agents' broker ports. */}}
{{- define "bench.brokersOnAgents" -}}
{{- if not .Values.kafka.bootstrapServers -}}true{{- end -}}
{{- end -}}

{{/* The agents the StatefulSet runs: as many as the run that places the most needs. */}}
{{- define "bench.agentCount" -}}
{{- $most := 0 -}}
{{- range $run := .Values.coordinator.runs -}}
{{- $n := 0 -}}
{{- range include "bench.placement" (dict "root" $ "run" $run) | fromJsonArray -}}
{{- $n = add $n (int (default 1 .agents)) -}}
{{- end -}}
{{- $most = max $most $n -}}
{{- end -}}
{{- $most -}}
{{- end -}}

{{/* Pods of this release keep off each other's nodes: services, load and audit spread out.
Called only when antiAffinity is not "none". */}}
{{- define "bench.antiAffinity" -}}
{{- $term := dict "topologyKey" "kubernetes.io/hostname" "labelSelector" (dict "matchLabels" (include "bench.selectorLabels" . | fromYaml)) -}}
podAntiAffinity:
{{- if eq .Values.antiAffinity "required" }}
  requiredDuringSchedulingIgnoredDuringExecution:
    {{- list $term | toYaml | nindent 4 }}
{{- else if eq .Values.antiAffinity "preferred" }}
  preferredDuringSchedulingIgnoredDuringExecution:
    - weight: 100
      podAffinityTerm:
        {{- $term | toYaml | nindent 8 }}
{{- else }}
{{- fail "antiAffinity: required, preferred or none" }}
{{- end }}
{{- end -}}
