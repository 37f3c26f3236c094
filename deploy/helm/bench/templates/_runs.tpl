{{/* The coordinator's script: coordinator.runs, one `bench run` after another. Every value is
one single-quoted word; no secret is among them (the agents' secret and Kafka's credentials are
files the hosts file and --kafka-config name). */}}
{{- define "bench.runsScript" -}}
#!/bin/sh
# Release {{ .Release.Name }}, revision {{ .Release.Revision }}: the runs of coordinator.runs, in order.
# Exit code as `bench run --repeat` gives a series': 1 if a run's audit failed, else 3 if one
# could not hold its rate, else 0. Any other code (2 bad input, 130 interrupted) ends the series.
set -u
out=/results/{{ .Release.Name }}-{{ .Release.Revision }}
audit=0
invalid=0
# The Job's pod being stopped: tini -g signals bench too, which stops its run and writes its
# results (exit 130); this shell waits for that instead of dying first.
trap 'echo "bench coordinator: stopping: the run in progress writes its results" >&2' TERM

run() {  # NAME, then bench run's options: one run into $out/NAME
    name=$1
    shift
    echo "bench coordinator: run $name, results in $out/$name" >&2
    bench run --output "$out/$name" "$@"
    code=$?
    case $code in
        0) ;;
        1) audit=1 ;;
        3) invalid=1 ;;
        *) echo "bench coordinator: run $name exited $code: the series ends here" >&2
           exit "$code" ;;
    esac
}
{{ range .Values.coordinator.runs }}
run {{ include "bench.sh" .name }} --pattern {{ include "bench.sh" .pattern }} --workload {{ include "bench.sh" (.workload | default "workloads/default.yaml") }} \
    --hosts /config/hosts-{{ .name }}.yaml
{{- with $.Values.kafka.bootstrapServers }} --bootstrap-servers {{ include "bench.sh" . }}{{ end }}
{{- with include "bench.kafkaConfigFile" $ }} \
    --kafka-config {{ . }}
{{- end }}
{{- range .args }} {{ include "bench.sh" . }}{{ end }}
{{- end }}

[ "$audit" = 1 ] && exit 1
[ "$invalid" = 1 ] && exit 3
exit 0
{{- end -}}
