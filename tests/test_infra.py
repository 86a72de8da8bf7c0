"""Structural checks of infra/ over the parsed HCL (terraform init/validate cannot run here)."""

from __future__ import annotations

import re
from functools import cache
from pathlib import Path
from typing import Any

import hcl2
import yaml

from opus_pipeline import config

INFRA = Path(__file__).resolve().parent.parent / "infra"


def _clean(node: Any) -> Any:
    """python-hcl2 keeps HCL's quotes and block markers; strip them to plain values."""
    if isinstance(node, dict):
        return {_unquote(k): _clean(v) for k, v in node.items() if k not in ("__is_block__", "__comments__")}
    if isinstance(node, list):
        return [_clean(v) for v in node]
    return _unquote(node) if isinstance(node, str) else node


def _unquote(text: str) -> str:
    return text[1:-1] if len(text) >= 2 and text[0] == text[-1] == '"' else text


@cache
def infra() -> dict[str, Any]:
    merged: dict[str, Any] = {"resource": {}, "data": {}, "variable": {}, "locals": {}, "output": {}}
    for path in sorted(INFRA.glob("*.tf")):
        with open(path) as source:
            parsed = _clean(hcl2.load(source))
        for kind in ("resource", "data"):
            for block in parsed.get(kind, []):
                for rtype, named in block.items():
                    merged[kind].setdefault(rtype, {}).update(named)
        for block in parsed.get("variable", []):
            merged["variable"].update(block)
        for block in parsed.get("locals", []):
            merged["locals"].update(block)
        for block in parsed.get("output", []):
            merged["output"].update(block)
    return merged


def resources(rtype: str) -> dict[str, dict]:
    return infra()["resource"].get(rtype, {})


def one(block: Any) -> dict:
    """A nested block (a list of one dict in the parsed form)."""
    assert isinstance(block, list) and len(block) == 1, block
    return block[0]


def bindings() -> list[tuple[str, str, dict]]:
    """Every IAM member binding: (resource type, name, body)."""
    return [
        (rtype, name, body)
        for rtype, named in infra()["resource"].items()
        if rtype.endswith("_iam_member")
        for name, body in named.items()
    ]


FUNCTIONS = resources("google_cloudfunctions2_function")


def test_every_variable_has_a_type_and_a_description() -> None:
    for name, body in infra()["variable"].items():
        assert body.get("type"), f"variable {name} has no type"
        assert body.get("description"), f"variable {name} has no description"


def test_every_function_runs_as_its_own_service_account() -> None:
    accounts = [one(f["service_config"])["service_account_email"] for f in FUNCTIONS.values()]
    assert len(FUNCTIONS) == 2 and len(set(accounts)) == 2
    for account in accounts:
        name = re.fullmatch(r"\$\{google_service_account\.(\w+)\.email\}", account).group(1)
        assert name in resources("google_service_account")


def test_functions_are_gen2_python_312_or_newer() -> None:
    for function in FUNCTIONS.values():
        runtime = one(function["build_config"])["runtime"]
        assert re.fullmatch(r"python3(1[2-9]|[2-9]\d)", runtime), runtime


def test_ingest_is_triggered_by_finalized_objects_of_the_source_bucket_with_retries() -> None:
    trigger = one(FUNCTIONS["ingest"]["event_trigger"])
    assert trigger["event_type"] == "google.cloud.storage.object.v1.finalized"
    assert trigger["retry_policy"] == "RETRY_POLICY_RETRY"
    assert trigger["trigger_region"] == "${var.region}"
    assert trigger["service_account_email"] == "${google_service_account.trigger.email}"
    source = '${google_storage_bucket.this["source"].name}'
    assert one(trigger["event_filters"]) == {"attribute": "bucket", "value": source}
    assert resources("google_storage_bucket")["this"]["location"] == "${var.region}"


def test_ingest_has_the_event_timeout_an_instance_cap_and_memory_for_two_chunks() -> None:
    service = one(FUNCTIONS["ingest"]["service_config"])
    assert service["timeout_seconds"] == 540
    assert service["max_instance_count"] == "${var.ingest_max_instances}"
    assert service["max_instance_request_concurrency"] == 1
    memory = infra()["variable"]["ingest_memory"]["default"]
    chunk_mib = infra()["variable"]["upload_chunk_size_mib"]["default"]
    assert int(memory.removesuffix("Mi")) >= 2 * chunk_mib + 256


def test_create_project_is_fed_by_an_oidc_push_subscription_with_retry_and_dead_letter() -> None:
    push = resources("google_pubsub_subscription")["create_project_push"]
    assert push["topic"] == "${google_pubsub_topic.clip_requests.id}"
    config_block = one(push["push_config"])
    uri = "${google_cloudfunctions2_function.create_project.service_config[0].uri}"
    assert config_block["push_endpoint"] == uri
    assert one(config_block["oidc_token"])["service_account_email"] == "${google_service_account.push.email}"
    assert set(one(push["retry_policy"])) == {"minimum_backoff", "maximum_backoff"}
    assert one(push["dead_letter_policy"])["dead_letter_topic"] == "${google_pubsub_topic.dead_letter.id}"
    assert "event_trigger" not in FUNCTIONS["create_project"]


def test_dead_letter_topic_has_a_pull_subscription_kept_seven_days() -> None:
    dead = resources("google_pubsub_subscription")["dead_letter"]
    assert dead["topic"] == "${google_pubsub_topic.dead_letter.id}"
    assert dead["message_retention_duration"] == "604800s"
    assert "push_config" not in dead


def test_create_project_instances_stay_within_opusclip_rate_limit() -> None:
    assert one(FUNCTIONS["create_project"]["service_config"])["max_instance_count"] == "${var.create_max_instances}"
    assert infra()["variable"]["create_max_instances"]["default"] <= 5


def _granted(role: str, member: str) -> list[tuple[str, dict]]:
    return [(rtype, body) for rtype, _, body in bindings() if body["role"] == role and body["member"] == member]


def test_trigger_identity_receives_events_and_invokes_only_ingest() -> None:
    member = "${google_service_account.trigger.member}"
    assert _granted("roles/eventarc.eventReceiver", member)
    [(rtype, body)] = _granted("roles/run.invoker", member)
    assert rtype == "google_cloud_run_v2_service_iam_member"
    assert body["name"] == "${google_cloudfunctions2_function.ingest.service_config[0].service}"


def test_push_identity_invokes_only_create_project() -> None:
    [(_, body)] = _granted("roles/run.invoker", "${google_service_account.push.member}")
    assert body["name"] == "${google_cloudfunctions2_function.create_project.service_config[0].service}"


def test_platform_agents_have_what_eventarc_and_dead_lettering_need() -> None:
    gcs = "${data.google_storage_project_service_account.gcs.member}"
    assert _granted("roles/pubsub.publisher", gcs)
    pubsub = "${local.pubsub_agent}"
    [(_, publisher)] = _granted("roles/pubsub.publisher", pubsub)
    assert publisher["topic"] == "${google_pubsub_topic.dead_letter.id}"
    [(_, subscriber)] = _granted("roles/pubsub.subscriber", pubsub)
    assert subscriber["subscription"] == "${google_pubsub_subscription.create_project_push.id}"
    [(_, minter)] = _granted("roles/iam.serviceAccountTokenCreator", pubsub)
    assert minter["service_account_id"] == "${google_service_account.push.name}"


def test_no_primitive_role_and_no_public_member() -> None:
    for rtype, name, body in bindings():
        assert body["role"] not in ("roles/owner", "roles/editor", "roles/viewer"), (rtype, name)
        assert "allUsers" not in body["member"] and "allAuthenticatedUsers" not in body["member"], (rtype, name)


PROJECT_LEVEL_ALLOWED = {
    "roles/pubsub.publisher",  # the GCS service agent, for Eventarc's own topic
    "roles/eventarc.eventReceiver",  # only grantable on a project
    "roles/logging.logWriter",  # builds
    "roles/artifactregistry.writer",  # builds: the repository Cloud Functions creates
}


def test_project_level_bindings_are_only_those_without_a_narrower_scope() -> None:
    for name, body in resources("google_project_iam_member").items():
        roles = body.get("for_each") or [body["role"]]
        if isinstance(roles, str):
            roles = re.findall(r'"(roles/[^"]+)"', roles.replace('\\"', '"'))
        assert roles, name
        for role in roles:
            assert role in PROJECT_LEVEL_ALLOWED, (name, role)


def test_secret_values_never_enter_terraform() -> None:
    assert "google_secret_manager_secret_version" not in infra()["resource"]
    for name in infra()["variable"]:
        assert not re.search(r"key|token|password|secret", name), name
    for function in FUNCTIONS.values():
        secret = one(one(function["service_config"])["secret_environment_variables"])
        assert secret["key"] == "OPUS_API_KEY"
        assert secret["secret"] == "${google_secret_manager_secret.opus_api_key.secret_id}"


def test_every_variable_the_code_reads_is_set_for_both_functions() -> None:
    environment = infra()["locals"]["function_environment"]
    assert set(config.ENV_VARS) - {"OPUS_API_KEY"} <= set(environment)
    for function in FUNCTIONS.values():
        assert one(function["service_config"])["environment_variables"] == "${local.function_environment}"


def test_every_bucket_is_private_and_uniform() -> None:
    [body] = resources("google_storage_bucket").values()
    assert body["for_each"] == "${local.buckets}"
    assert set(infra()["locals"]["buckets"]) == {"source", "state", "output", "function_source"}
    assert body["uniform_bucket_level_access"] is True
    assert body["public_access_prevention"] == "enforced"


def test_state_records_and_old_function_archives_expire() -> None:
    buckets = infra()["locals"]["buckets"]
    assert buckets["state"]["expire_days"] == "${var.state_retention_days}"
    assert buckets["function_source"]["expire_days"] == 30
    [body] = resources("google_storage_bucket").values()
    expiry = one(body["dynamic"])["lifecycle_rule"]
    assert one(one(expiry["content"])["condition"])["age"] == "${lifecycle_rule.value}"


def test_function_source_object_name_carries_the_archive_hash() -> None:
    body = resources("google_storage_bucket_object")["functions"]
    assert "${data.archive_file.functions.output_md5}" in body["name"]
    assert infra()["data"]["archive_file"]["functions"]["source_dir"].endswith("/../functions")


def test_the_apis_the_stack_needs_are_enabled() -> None:
    services = set(infra()["locals"]["services"])
    needed = {
        "cloudfunctions",
        "run",
        "eventarc",
        "pubsub",
        "storage",
        "secretmanager",
        "cloudbuild",
        "artifactregistry",
        "logging",
        "monitoring",
    }
    assert {f"{s}.googleapis.com" for s in needed} <= services


def test_monitoring_has_metrics_a_dashboard_and_the_three_alerts() -> None:
    metrics = resources("google_logging_metric")
    assert {"videos_uploaded", "bytes_streamed", "projects_created", "video_failures"} <= set(metrics)
    assert "reason" in metrics["video_failures"]["label_extractors"]
    assert "pipeline" in resources("google_monitoring_dashboard")
    alerts = resources("google_monitoring_alert_policy")
    assert {"dead_letter_not_empty", "video_failed", "function_errors"} <= set(alerts)
    for alert in alerts.values():
        assert alert["notification_channels"] == "${var.notification_channels}"


def test_log_metrics_match_the_events_the_code_logs() -> None:
    code = "\n".join(p.read_text() for p in (INFRA.parent / "functions").rglob("*.py"))
    for metric in resources("google_logging_metric").values():
        events = re.findall(r'"([a-z_]+)\\?"', metric["filter"].split("jsonPayload.event=", 1)[1])
        assert events
        for event in events:
            assert f'event="{event}"' in code, event


def test_cloud_build_tests_checks_plans_and_applies_only_on_request() -> None:
    build = yaml.safe_load((INFRA.parent / "cloudbuild.yaml").read_text())
    steps = {step["id"]: step for step in build["steps"]}
    script = "\n".join(steps["test"]["args"])
    assert "google-cloud-cli-pubsub-emulator" in script and "pytest" in script and "ruff check" in script
    assert steps["terraform-fmt"]["args"] == ["fmt", "-check", "-recursive", "infra"]
    assert "-backend-config=bucket=${_TF_STATE_BUCKET}" in steps["terraform-init"]["args"]
    assert steps["terraform-validate"]["args"] == ["validate"]
    assert "plan" in steps["terraform-plan"]["args"]
    assert '"${_APPLY}" = "true"' in "\n".join(steps["terraform-apply"]["args"])
    assert build["substitutions"]["_APPLY"] == "false"
