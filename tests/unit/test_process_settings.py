"""What any process using Legato reads from its environment, each variable under the
name and with the meaning users and tools give it."""

from __future__ import annotations

import pytest

from legato.settings import ProcessSettings


def test_nothing_set_means_no_export_no_sharing_no_faults_and_auto_logs() -> None:
    assert ProcessSettings.from_env({}) == ProcessSettings()
    assert ProcessSettings() == ProcessSettings(None, None, False, None, "auto", ())


@pytest.mark.parametrize(
    ("env", "endpoint"),
    [
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://otel:4318"}, "http://otel:4318/v1/traces"),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://otel:4318/"}, "http://otel:4318/v1/traces"),
        ({"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://t:1/in"}, "http://t:1/in"),
        (
            {
                "OTEL_EXPORTER_OTLP_ENDPOINT": "http://a:1",
                "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://b:2/x",
            },
            "http://b:2/x",
        ),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": ""}, None),
    ],
)
def test_spans_go_to_the_traces_endpoint_as_given_or_to_the_general_one_with_its_path(
    env: dict[str, str], endpoint: str | None
) -> None:
    assert ProcessSettings.from_env(env).traces_endpoint == endpoint


def test_the_service_name_and_the_sdk_switch_are_opentelemetry_s() -> None:
    read = ProcessSettings.from_env({"OTEL_SERVICE_NAME": "flights", "OTEL_SDK_DISABLED": "TRUE"})
    assert (read.service_name, read.otel_disabled) == ("flights", True)
    assert not ProcessSettings.from_env({"OTEL_SDK_DISABLED": "false"}).otel_disabled


def test_metrics_are_shared_only_where_a_directory_is_named() -> None:
    assert ProcessSettings.from_env({"PROMETHEUS_MULTIPROC_DIR": "/run/m"}).metrics_dir == "/run/m"
    assert ProcessSettings.from_env({"PROMETHEUS_MULTIPROC_DIR": ""}).metrics_dir is None


@pytest.mark.parametrize(
    ("text", "log_format"),
    [("json", "json"), ("JSON", "json"), ("text", "text"), ("auto", "auto"), ("xml", "auto")],
)
def test_the_log_format_is_json_text_or_else_auto(text: str, log_format: str) -> None:
    assert ProcessSettings.from_env({"LEGATO_LOG_FORMAT": text}).log_format == log_format


def test_armed_fault_points_are_names_or_prefixes_with_the_hit_that_kills() -> None:
    read = ProcessSettings.from_env({"LEGATO_FAULTS": "after_op.compensate@7, xa ,,"})
    assert read.faults == (("after_op.compensate", 7), ("xa", 1))
