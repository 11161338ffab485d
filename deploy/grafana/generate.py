"""The "Mage AI Training" Grafana dashboard, generated with grafana-foundation-sdk.

    python deploy/grafana/generate.py      # rewrites dashboards/mage-ai-training.json

The committed JSON must equal this output (a test checks). Queries only use metrics of
the catalogue (magerl/telemetry/catalogue.py) and the cluster's standard exporters; the
System Resources queries fall back to the processes' own metrics where cAdvisor is absent
(a local `magerl train`).
"""

from __future__ import annotations

import json
from pathlib import Path

from grafana_foundation_sdk.builders.dashboard import Dashboard, DatasourceVariable, QueryVariable, Row
from grafana_foundation_sdk.builders.prometheus import Dataquery
from grafana_foundation_sdk.builders.stat import Panel as Stat
from grafana_foundation_sdk.builders.table import Panel as Table
from grafana_foundation_sdk.builders.timeseries import Panel as Timeseries
from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.models.dashboard import DataSourceRef, VariableRefresh
from grafana_foundation_sdk.models.prometheus import PromQueryFormat

OUTPUT = Path(__file__).parent / "dashboards" / "mage-ai-training.json"
UID = "mage-ai-training"
DS = DataSourceRef(type_val="prometheus", uid="${datasource}")
SEL = 'cluster=~"$cluster", namespace=~"$namespace", run=~"$run"'


def q(expr: str, legend: str = "", ref: str = "A", table: bool = False) -> Dataquery:
    query = Dataquery().expr(expr).legend_format(legend or "__auto").ref_id(ref).datasource(DS)
    if table:
        query = query.instant().format(PromQueryFormat.TABLE)
    return query


def series(title: str, unit: str, *queries: Dataquery, width: int = 12, description: str = "") -> Timeseries:
    panel = Timeseries().title(title).unit(unit).datasource(DS).span(width).height(8).description(description)
    for query in queries:
        panel = panel.with_target(query)
    return panel


def variable(name: str, label: str, query: str) -> QueryVariable:
    return (
        QueryVariable(name).label(label).datasource(DS).query(query).refresh(VariableRefresh.ON_TIME_RANGE_CHANGED)
        .include_all(True).all_value(".*").multi(True)
    )


def build() -> Dashboard:
    cpu = (f'sum by (pod) (rate(container_cpu_usage_seconds_total{{{SEL}, pod=~"mage-.*", container!=""}}[$__rate_interval]))'
           f' or sum by (pod) (rate(process_cpu_seconds_total{{job="mage-pods", {SEL}}}[$__rate_interval]))')
    memory = (f'sum by (pod) (container_memory_usage_bytes{{{SEL}, pod=~"mage-.*", container!=""}})'
              f' or sum by (pod) ({{__name__=~"mage_(worker|learner|evaluator)_memory_used_bytes", {SEL}}})')
    return (
        Dashboard("Mage AI Training")
        .uid(UID)
        .tags(["magerl", "generated"])
        .refresh("30s")
        .time("now-3h", "now")
        .timezone("browser")
        .with_variable(DatasourceVariable("datasource").label("Data source").type("prometheus"))
        .with_variable(variable("cluster", "Cluster", "label_values(mage_build_info, cluster)"))
        .with_variable(variable("namespace", "Namespace", 'label_values(mage_build_info{cluster=~"$cluster"}, namespace)'))
        .with_variable(variable("run", "Run", 'label_values(mage_build_info{cluster=~"$cluster", namespace=~"$namespace"}, run)'))
        .with_row(Row("Workers"))
        .with_panel(series(
            "Episode Generation Rate", "ops",
            q(f'sum by (pod) (rate(mage_episodes_completed_total{{role="worker", {SEL}}}[$__rate_interval]))', "{{pod}}"),
            q(f'sum(rate(mage_episodes_completed_total{{role="worker", {SEL}}}[$__rate_interval]))', "all workers", "B"),
            description="Episodes finished per second, per worker pod. LowEpisodeGenerationRate fires below 0.1/s.",
        ))
        .with_panel(Table().title("Throughput Table").datasource(DS).span(12).height(8)
            .description("Per-pod performance: episodes/s, policy decisions/s, policy version, resident memory.")
            .with_target(q(f'sum by (pod) (rate(mage_episodes_completed_total{{role="worker", {SEL}}}[5m]))', "episodes/s", "A", True))
            .with_target(q(f'sum by (pod) (rate(mage_decisions_total{{role="worker", {SEL}}}[5m]))', "decisions/s", "B", True))
            .with_target(q(f'max by (pod) (mage_policy_version{{role="worker", {SEL}}})', "policy version", "C", True))
            .with_target(q(f'sum by (pod) (mage_worker_memory_used_bytes{{{SEL}}})', "memory", "D", True)))
        .with_row(Row("Training"))
        .with_panel(series(
            "Training Loss Trends", "none",
            q(f'mage_training_loss{{{SEL}}}', "{{pod}}"),
            description="Total loss of each optimizer update. TrainingLossDivergence fires on a rise above 1.0 in 10 minutes.",
        ))
        .with_panel(series(
            "Win Rate", "percentunit",
            q(f'max by (opponent) (mage_win_rate{{{SEL}}})', "{{opponent}}"),
            description="Latest evaluation of the policy against each fixed opponent.",
        ))
        .with_panel(series(
            "Policy Versions and Lag", "none",
            q(f'max by (role) (mage_policy_version{{{SEL}}})', "version ({{role}})"),
            q(f'mage_policy_lag_versions{{{SEL}}}', "lag of training data (versions)", "B"),
            description="Learner's published version, newest version in workers, and how stale the training data is.",
        ))
        .with_panel(series(
            "Checkpoints", "none",
            q(f'sum(increase(mage_checkpoints_saved_total{{{SEL}}}[1h]))', "saved in the last hour"),
            q(f'sum(increase(mage_errors_total{{component="checkpoint", {SEL}}}[1h])) or vector(0)', "failed in the last hour", "B"),
            description="Checkpoint writes; CheckpointFailures fires on any failure.",
        ))
        .with_row(Row("GPU"))
        .with_panel(series(
            "GPU Memory", "bytes",
            q(f'mage_gpu_memory_used_bytes{{{SEL}}}', "used {{pod}} gpu {{gpu}}"),
            q(f'mage_gpu_memory_total_bytes{{{SEL}}}', "total {{pod}} gpu {{gpu}}", "B"),
            description="Learner GPU memory, used vs total (NVML). Empty where no GPU is used.",
        ))
        .with_panel(series(
            "Batch Size: Optimal vs Current", "none",
            q(f'mage_optimal_batch_size{{{SEL}}}', "optimal (measured memory budget)"),
            q(f'mage_current_batch_size{{{SEL}}}', "current", "B"),
        ))
        .with_row(Row("System Resources"))
        .with_panel(series("CPU per Pod", "cores", q(cpu, "{{pod}}"), width=8,
                           description="cAdvisor container CPU; the processes' own CPU where cAdvisor is absent."))
        .with_panel(series("Memory per Pod", "bytes", q(memory, "{{pod}}"), width=8,
                           description="cAdvisor container memory; the pods' resident memory where cAdvisor is absent."))
        .with_panel(series("GPU Memory per Node", "bytes",
                           q('nvidia_gpu_memory_used_bytes', "used {{instance}} gpu {{gpu}}"),
                           q('nvidia_gpu_memory_total_bytes', "total {{instance}} gpu {{gpu}}", "B"), width=8,
                           description="From the DCGM exporter (recording rules in mage_rules.yml)."))
        .with_row(Row("Errors"))
        .with_panel(series(
            "Error Rate Analysis", "ops",
            q(f'sum by (component, kind) (rate(mage_errors_total{{{SEL}}}[$__rate_interval]))', "{{component}} / {{kind}}"),
            width=16, description="Errors per second by component and kind; engine and transport are the bridge errors.",
        ))
        .with_panel(Stat().title("Pod Restarts (1h)").datasource(DS).span(8).height(8)
            .with_target(q('sum(increase(kube_pod_container_status_restarts_total{namespace=~"$namespace", pod=~"mage-.*"}[1h])) or vector(0)', "restarts")))
    )


def render() -> str:
    dashboard = json.loads(JSONEncoder(sort_keys=True, indent=2).encode(build().build()))
    for var in dashboard["templating"]["list"]:
        if var["type"] != "interval":  # the SDK writes interval-only defaults on every variable
            for key in ("auto", "auto_count", "auto_min"):
                var.pop(key, None)
    return json.dumps(dashboard, indent=2, sort_keys=True) + "\n"


if __name__ == "__main__":
    OUTPUT.parent.mkdir(parents=True, exist_ok=True)
    OUTPUT.write_text(render())
    print(f"wrote {OUTPUT}")
