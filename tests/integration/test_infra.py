"""Structural checks of infra/ over the parsed HCL (terraform init/validate cannot run here)."""

from __future__ import annotations

import json
import os
import re
import subprocess
from functools import cache
from pathlib import Path
from typing import Any

import hcl2
import pytest
import yaml
from hcl_eval import evaluate

from opus_pipeline import config

INFRA = Path(__file__).resolve().parents[2] / "infra"
DOCS = (INFRA.parent / "docs" / "deploying.md").read_text()


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
    merged: dict[str, Any] = {"resource": {}, "data": {}, "variable": {}, "locals": {}, "output": {}, "check": {}}
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
        for block in parsed.get("check", []):
            merged["check"].update(block)
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


FUNCTION = resources("google_cloudfunctions2_function")["this"]
FUNCTIONS = infra()["locals"]["functions"]  # the definitions FUNCTION is deployed from, by key
CONCLUDING = {"on_project_concluded", "sweep_projects"}


def service_of(key: str) -> str:
    """How a binding names the Cloud Run service of one function."""
    return f'${{google_cloudfunctions2_function.this["{key}"].service_config[0].service}}'


def only(key: str) -> str:
    """The for_each of a grant to the functions whose definition has ``key`` set."""
    return f"${{{{for key, f in local.functions : key => f if f.{key}}}}}"


def test_every_variable_has_a_type_and_a_description() -> None:
    for name, body in infra()["variable"].items():
        assert body.get("type"), f"variable {name} has no type"
        assert body.get("description"), f"variable {name} has no description"


def test_every_function_runs_as_its_own_service_account() -> None:
    assert FUNCTION["for_each"] == "${local.functions}"
    assert one(FUNCTION["service_config"])["service_account_email"] == "${each.value.service_account}"
    accounts = [f["service_account"] for f in FUNCTIONS.values()]
    assert set(FUNCTIONS) == {"ingest", "create_project", "on_project_concluded", "sweep_projects"}
    assert len(set(accounts)) == len(FUNCTIONS)
    for account in accounts:
        name = re.fullmatch(r"\$\{google_service_account\.(\w+)\.email\}", account).group(1)
        assert name in resources("google_service_account")


def test_functions_are_gen2_python_312_or_newer() -> None:
    runtime = one(FUNCTION["build_config"])["runtime"]
    assert re.fullmatch(r"python3(1[2-9]|[2-9]\d)", runtime), runtime


def test_event_triggers_are_built_from_each_functions_trigger() -> None:
    dynamic = one(FUNCTION["dynamic"])["event_trigger"]
    assert dynamic["for_each"] == "${each.value.trigger == null ? [] : [each.value.trigger]}"
    trigger = one(dynamic["content"])
    assert trigger["trigger_region"] == "${var.region}"
    assert trigger["event_type"] == "${event_trigger.value.event_type}"
    assert trigger["retry_policy"] == "${event_trigger.value.retry_policy}"
    assert trigger["service_account_email"] == "${event_trigger.value.service_account}"
    assert trigger["pubsub_topic"] == "${event_trigger.value.topic}"
    filters = one(trigger["dynamic"])["event_filters"]
    assert filters["for_each"] == "${event_trigger.value.bucket == null ? [] : [event_trigger.value.bucket]}"
    assert one(filters["content"]) == {"attribute": "bucket", "value": "${event_filters.value}"}
    # HTTP and push-fed functions have none.
    assert FUNCTIONS["create_project"]["trigger"] is None and FUNCTIONS["on_project_concluded"]["trigger"] is None


def test_ingest_is_triggered_by_finalized_objects_of_the_source_bucket_with_retries() -> None:
    assert FUNCTIONS["ingest"]["trigger"] == {
        "event_type": "google.cloud.storage.object.v1.finalized",
        "retry_policy": "RETRY_POLICY_RETRY",
        "service_account": "${google_service_account.trigger.email}",
        "bucket": '${google_storage_bucket.this["source"].name}',
        "topic": None,
    }
    assert resources("google_storage_bucket")["this"]["location"] == "${var.region}"


def test_the_scheduler_ticks_a_topic_that_triggers_the_sweeper_without_redelivery() -> None:
    job = resources("google_cloud_scheduler_job")["sweep"]
    assert job["schedule"] == "${var.sweep_schedule}"
    assert job["region"] == "${var.region}"
    target = one(job["pubsub_target"])
    assert target["topic_name"] == "${google_pubsub_topic.sweep_ticks.id}"
    assert target["data"]  # Pub/Sub refuses a message with neither data nor attributes
    assert infra()["variable"]["sweep_schedule"]["default"] == "*/5 * * * *"
    assert FUNCTIONS["sweep_projects"]["trigger"] == {
        "event_type": "google.cloud.pubsub.topic.v1.messagePublished",
        "retry_policy": "RETRY_POLICY_DO_NOT_RETRY",
        "service_account": "${google_service_account.sweep_trigger.email}",
        "bucket": None,
        "topic": "${google_pubsub_topic.sweep_ticks.id}",
    }
    assert FUNCTIONS["sweep_projects"]["entry_point"] == "sweep_projects"
    assert FUNCTIONS["sweep_projects"]["max_instances"] == 1
    assert "cloudscheduler.googleapis.com" in infra()["locals"]["services"]


def test_sweep_trigger_identity_invokes_only_the_sweeper_and_needs_no_event_receiver_role() -> None:
    member = "${google_service_account.sweep_trigger.member}"
    [(rtype, body)] = [(t, b) for t, _, b in bindings() if b["member"] == member]
    assert rtype == "google_cloud_run_v2_service_iam_member"
    assert body["role"] == "roles/run.invoker"
    assert body["name"] == service_of("sweep_projects")


def test_the_sweeper_runs_as_long_as_its_conclusions_are_budgeted_for() -> None:
    """A conclusion keeps within the sweep's timeout (``conclude.FUNCTION_TIMEOUT_SECONDS``): the
    platform would cut it there without a word."""
    from opus_pipeline.usecases.conclude import FUNCTION_TIMEOUT_SECONDS

    assert FUNCTIONS["sweep_projects"]["timeout_seconds"] == FUNCTION_TIMEOUT_SECONDS


def test_ingest_has_the_event_timeout_an_instance_cap_and_memory_for_two_chunks() -> None:
    ingest = FUNCTIONS["ingest"]
    assert ingest["timeout_seconds"] == 540
    assert ingest["max_instances"] == "${var.ingest_max_instances}"
    assert ingest["memory"] == "${var.ingest_memory}"
    service = one(FUNCTION["service_config"])
    assert service["timeout_seconds"] == "${each.value.timeout_seconds}"
    assert service["max_instance_count"] == "${each.value.max_instances}"
    assert service["max_instance_request_concurrency"] == 1
    memory = infra()["variable"]["ingest_memory"]["default"]
    chunk_mib = infra()["variable"]["upload_chunk_size_mib"]["default"]
    assert int(memory.removesuffix("Mi")) >= 2 * chunk_mib + 256


def test_create_project_is_fed_by_an_oidc_push_subscription_with_retry_and_dead_letter() -> None:
    push = resources("google_pubsub_subscription")["create_project_push"]
    assert push["topic"] == "${google_pubsub_topic.clip_requests.id}"
    config_block = one(push["push_config"])
    uri = '${google_cloudfunctions2_function.this["create_project"].service_config[0].uri}'
    assert config_block["push_endpoint"] == uri
    assert one(config_block["oidc_token"])["service_account_email"] == "${google_service_account.push.email}"
    assert set(one(push["retry_policy"])) == {"minimum_backoff", "maximum_backoff"}
    assert one(push["dead_letter_policy"])["dead_letter_topic"] == "${google_pubsub_topic.dead_letter.id}"
    assert FUNCTIONS["create_project"]["trigger"] is None


def test_dead_letter_topic_has_a_pull_subscription_kept_seven_days() -> None:
    dead = resources("google_pubsub_subscription")["dead_letter"]
    assert dead["topic"] == "${google_pubsub_topic.dead_letter.id}"
    assert dead["message_retention_duration"] == "604800s"
    assert "push_config" not in dead


def test_create_project_instances_stay_within_opusclip_rate_limit() -> None:
    assert FUNCTIONS["create_project"]["max_instances"] == "${var.create_max_instances}"
    assert infra()["variable"]["create_max_instances"]["default"] <= 5


def _granted(role: str, member: str) -> list[tuple[str, dict]]:
    return [(rtype, body) for rtype, _, body in bindings() if body["role"] == role and body["member"] == member]


def test_trigger_identity_receives_events_and_invokes_only_ingest() -> None:
    member = "${google_service_account.trigger.member}"
    assert _granted("roles/eventarc.eventReceiver", member)
    [(rtype, body)] = _granted("roles/run.invoker", member)
    assert rtype == "google_cloud_run_v2_service_iam_member"
    assert body["name"] == service_of("ingest")


def test_push_identity_invokes_only_create_project() -> None:
    [(_, body)] = _granted("roles/run.invoker", "${google_service_account.push.member}")
    assert body["name"] == service_of("create_project")


def test_platform_agents_have_what_eventarc_and_dead_lettering_need() -> None:
    gcs = "${data.google_storage_project_service_account.gcs.member}"
    assert _granted("roles/pubsub.publisher", gcs)
    pubsub = "${local.pubsub_agent}"
    [(_, publisher)] = _granted("roles/pubsub.publisher", pubsub)
    assert publisher["topic"] == "${google_pubsub_topic.dead_letter.id}"
    [(_, subscriber)] = _granted("roles/pubsub.subscriber", pubsub)
    assert subscriber["subscription"] == "${google_pubsub_subscription.create_project_push.id}"
    minted = {body["service_account_id"] for _, body in _granted("roles/iam.serviceAccountTokenCreator", pubsub)}
    # The triggers' accounts too: Pub/Sub agents older than April 2021 lack the role on them.
    assert minted == {
        "${google_service_account.push.name}",
        "${google_service_account.trigger.name}",
        "${google_service_account.sweep_trigger.name}",
    }
    assert _granted("roles/eventarc.serviceAgent", "${local.eventarc_agent}")


def test_service_agents_are_created_not_assumed() -> None:
    agents = resources("google_project_service_identity")["agents"]
    assert agents["provider"] == "google-beta"
    assert set(re.findall(r'"([a-z]+\.googleapis\.com)"', agents["for_each"])) == {
        "pubsub.googleapis.com",
        "eventarc.googleapis.com",
    }
    locals_ = infra()["locals"]
    assert locals_["pubsub_agent"] == '${google_project_service_identity.agents["pubsub.googleapis.com"].member}'
    assert locals_["eventarc_agent"] == '${google_project_service_identity.agents["eventarc.googleapis.com"].member}'


def test_no_primitive_role_and_no_public_member_but_the_webhook_invoker() -> None:
    public = []
    for rtype, name, body in bindings():
        assert body["role"] not in ("roles/owner", "roles/editor", "roles/viewer"), (rtype, name)
        if "allUsers" in body["member"] or "allAuthenticatedUsers" in body["member"]:
            public.append((rtype, name, body))
    [(rtype, name, body)] = public
    assert (rtype, name) == ("google_cloud_run_v2_service_iam_member", "anyone_invokes_webhook")
    assert body["member"] == "allUsers"
    assert body["role"] == "roles/run.invoker"
    assert body["name"] == service_of("on_project_concluded")
    assert "for_each" not in body


def test_the_webhook_receiver_is_the_only_function_reachable_from_the_internet() -> None:
    assert one(FUNCTION["service_config"])["ingress_settings"] == "${each.value.ingress}"
    ingress = {key: f["ingress"] for key, f in FUNCTIONS.items()}
    assert ingress.pop("on_project_concluded") == "ALLOW_ALL"
    assert set(ingress.values()) == {"ALLOW_INTERNAL_ONLY"}
    receiver = FUNCTIONS["on_project_concluded"]
    assert receiver["entry_point"] == "on_project_concluded" and receiver["trigger"] is None
    # checkov's ingress check is skipped on the resource, with the reason; it fires on the receiver only.
    text = (INFRA / "functions.tf").read_text()
    assert "checkov:skip=CKV_GCP_124: only on_project_concluded allows all ingress" in text


def test_the_registered_webhook_url_is_the_receivers_deterministic_cloud_run_url() -> None:
    locals_ = infra()["locals"]
    assert FUNCTIONS["on_project_concluded"]["name"] == "${local.webhook_service}"
    assert locals_["webhook_service"] == "${local.prefix}-webhook"
    assert locals_["webhook_url"] == (
        "https://${local.webhook_service}-${data.google_project.this.number}.${var.region}.run.app"
    )
    # Cloud Run has the deterministic URL only while SERVICE-PROJECT_NUMBER fits one DNS label.
    longest_prefix = int(re.search(r"\{1,(\d+)\}", infra()["variable"]["name_prefix"]["validation"][0]["condition"])[1])
    assert (1 + longest_prefix) + len("-webhook") + 1 + len("123456789012") <= 63
    [check] = infra()["check"].values()
    service = one(check["data"])["google_cloud_run_v2_service"]["webhook"]
    # The data source builds projects/…/services/NAME itself: it is given the short name.
    assert service["name"] == '${local.function_services["on_project_concluded"]}'
    assert check["assert"][0]["condition"] == (
        "${contains(data.google_cloud_run_v2_service.webhook.urls, local.webhook_url)}"
    )
    assert infra()["output"]["webhook_url"]["value"] == "${local.webhook_url}"


PROJECT_LEVEL_ALLOWED = {
    "roles/pubsub.publisher",  # the GCS service agent, for Eventarc's own topic
    "roles/eventarc.eventReceiver",  # only grantable on a project
    "roles/eventarc.serviceAgent",  # a service agent's role
    "roles/logging.logWriter",  # builds
    "roles/storage.objectViewer",  # builds, conditioned on the gcf-v2-sources bucket (below)
}


def test_project_level_bindings_are_only_those_without_a_narrower_scope() -> None:
    for name, body in resources("google_project_iam_member").items():
        assert "for_each" not in body, name
        assert body["role"] in PROJECT_LEVEL_ALLOWED, (name, body["role"])


def test_build_reads_only_the_gcf_sources_bucket_and_pushes_only_to_the_functions_repository() -> None:
    member = "${google_service_account.build.member}"
    viewers = _granted("roles/storage.objectViewer", member)
    [viewer] = [body for rtype, body in viewers if rtype == "google_project_iam_member"]
    condition = one(viewer["condition"])
    assert condition["expression"] == 'resource.name.startsWith(\\"projects/_/buckets/${local.gcf_sources_bucket}\\")'
    assert infra()["locals"]["gcf_sources_bucket"] == "gcf-v2-sources-${data.google_project.this.number}-${var.region}"
    [(rtype, writer)] = _granted("roles/artifactregistry.writer", member)
    assert rtype == "google_artifact_registry_repository_iam_member"
    assert writer["repository"] == "${google_artifact_registry_repository.functions.name}"
    assert one(FUNCTION["build_config"])["docker_repository"] == "${google_artifact_registry_repository.functions.id}"


def test_fresh_project_ordering() -> None:
    """What a first apply on a new project must wait for (issue 9, findings 1-4)."""
    for name, account in resources("google_service_account").items():
        assert account["depends_on"] == ["${google_project_service.this}"], name
    assert infra()["data"]["google_project"]["this"]["depends_on"] == [
        '${google_project_service.this["cloudresourcemanager.googleapis.com"]}'
    ]
    assert "cloudresourcemanager.googleapis.com" in infra()["locals"]["services"]
    sleeps = resources("time_sleep")
    assert set(sleeps["event_grants_propagate"]["depends_on"]) == {
        "${google_project_iam_member.gcs_agent_publisher}",
        "${google_project_iam_member.eventarc_agent}",
        "${google_project_iam_member.trigger_event_receiver}",
        "${google_service_account_iam_member.pubsub_agent_mints_trigger_tokens}",
        "${google_service_account_iam_member.pubsub_agent_mints_sweep_trigger_tokens}",
    }
    assert set(sleeps["build_grants_propagate"]["depends_on"]) == {
        "${google_project_iam_member.build_logs}",
        "${google_project_iam_member.build_reads_gcf_sources}",
        "${google_storage_bucket_iam_member.build_reads_source}",
        "${google_artifact_registry_repository_iam_member.build_pushes_images}",
    }
    assert set(FUNCTION["depends_on"]) == {
        "${time_sleep.build_grants_propagate}",
        "${time_sleep.event_grants_propagate}",
        "${google_secret_manager_secret_iam_member.reads_key}",
        "${google_secret_manager_secret_iam_member.reads_webhook_token}",
        "${google_secret_manager_secret_iam_member.reads_webhook_signing_key}",
    }
    metric_wait = sleeps["log_metrics_registered"]
    assert metric_wait["triggers"] == {
        "video_failures": "${google_logging_metric.video_failures.id}",
        "projects_stalled": "${google_logging_metric.projects_stalled.id}",
        "video_projects": "${google_logging_metric.video_projects.id}",
    }
    for name in ("video_failed", "project_stalled", "two_projects_for_a_video"):
        alert = resources("google_monitoring_alert_policy")[name]
        assert alert["depends_on"] == ["${time_sleep.log_metrics_registered}"], name


def secret_environment(key: str) -> dict:
    """The dynamic secret_environment_variables block of the functions that maps the variable ``key``."""
    [block] = [
        d["secret_environment_variables"]
        for d in one(FUNCTION["service_config"])["dynamic"]
        if one(d["secret_environment_variables"]["content"])["key"] == key
    ]
    return block


# Variables that name a Secret Manager secret (its id), never hold a secret's value.
SECRET_NAMES = {"webhook_signing_secret_id"}


def test_secret_values_never_enter_terraform() -> None:
    assert "google_secret_manager_secret_version" not in infra()["resource"]
    for name in set(infra()["variable"]) - SECRET_NAMES:
        assert not re.search(r"key|token|password|secret", name), name
    service = one(FUNCTION["service_config"])
    secret = one(service["secret_environment_variables"])
    assert secret["key"] == "OPUS_API_KEY"
    assert secret["secret"] == "${google_secret_manager_secret.opus_api_key.secret_id}"
    for key in ("OPUS_WEBHOOK_TOKEN", "OPUS_WEBHOOK_SECRET"):
        assert one(secret_environment(key)["content"])["secret"] == "${secret_environment_variables.value}"
    assert {one(d["secret_environment_variables"]["content"])["key"] for d in service["dynamic"]} == {
        "OPUS_WEBHOOK_TOKEN",
        "OPUS_WEBHOOK_SECRET",
    }
    # A name only: a secret id, which a pasted key (OpusClip's are sk-...) or a resource path is not.
    for name in SECRET_NAMES:
        assert name.endswith("_secret_id") and infra()["variable"][name]["default"] == ""
        assert not accepts(name, "sk-0123456789abcdef") and not accepts(name, "projects/p/secrets/s")


def test_the_webhook_token_reaches_only_the_function_that_registers_it_and_the_receiver() -> None:
    token = secret_environment("OPUS_WEBHOOK_TOKEN")
    assert token["for_each"] == (
        "${each.value.webhook == null ? [] : [google_secret_manager_secret.webhook_token.secret_id]}"
    )
    webhook = {key: f["webhook"] for key, f in FUNCTIONS.items() if f["webhook"] is not None}
    assert webhook == {"create_project": "registers", "on_project_concluded": "receives"}
    [(rtype, readers)] = [
        (t, b) for t, _, b in bindings() if b.get("secret_id") == "${google_secret_manager_secret.webhook_token.id}"
    ]
    assert rtype == "google_secret_manager_secret_iam_member"
    assert readers["for_each"] == "${{for key, f in local.functions : key => f if f.webhook != null}}"
    assert readers["role"] == "roles/secretmanager.secretAccessor"


def test_the_webhook_signing_key_reaches_the_receiver_alone_and_only_when_a_secret_is_named() -> None:
    """OpusClip signs webhooks with the organisation's first API key; when OPUS_API_KEY is another one the
    receiver needs OPUS_WEBHOOK_SECRET. Unset (the default), nothing is mapped and nothing granted; set,
    the receiver, the one function that verifies signatures, gets it from the named secret, and its
    account alone may read that secret."""
    block = secret_environment("OPUS_WEBHOOK_SECRET")
    assert one(block["content"]) == {
        "key": "OPUS_WEBHOOK_SECRET",
        "project_id": "${var.project_id}",
        "secret": "${secret_environment_variables.value}",
        "version": "latest",
    }
    [(rtype, grant)] = [(t, b) for t, _, b in bindings() if "var.webhook_signing_secret_id" in b.get("secret_id", "")]
    assert rtype == "google_secret_manager_secret_iam_member"
    assert grant["role"] == "roles/secretmanager.secretAccessor"
    assert grant["member"] == "serviceAccount:${each.value.service_account}"

    def mapped(var: dict[str, Any]) -> dict[str, list[str]]:
        """The secrets each function's OPUS_WEBHOOK_SECRET comes from (the dynamic block's for_each)."""
        return {key: evaluate(block["for_each"], {"each": {"value": f}, "var": var}) for key, f in FUNCTIONS.items()}

    unset = defaults()
    assert unset["webhook_signing_secret_id"] == ""
    assert mapped(unset) == {key: [] for key in FUNCTIONS}
    assert functions_of(grant["for_each"], unset) == set()
    assert evaluate(infra()["output"]["webhook_signing_secret"]["value"], {"var": unset}) is None

    named = {**defaults(), "webhook_signing_secret_id": "opus-webhook-signing-key"}
    assert accepts("webhook_signing_secret_id", "opus-webhook-signing-key")
    assert mapped(named) == {
        key: ["opus-webhook-signing-key"] if key == "on_project_concluded" else [] for key in FUNCTIONS
    }
    assert functions_of(grant["for_each"], named) == {"on_project_concluded"}
    assert FUNCTIONS["on_project_concluded"]["webhook"] == "receives"
    assert FUNCTIONS["on_project_concluded"]["service_account"] == "${google_service_account.webhook.email}"
    secret_path = evaluate(f'"{grant["secret_id"]}"', {"var": named})  # a template: evaluated as the string it is
    assert secret_path == "projects/my-project/secrets/opus-webhook-signing-key"
    assert evaluate(infra()["output"]["webhook_signing_secret"]["value"], {"var": named}) == "opus-webhook-signing-key"
    # The functions start only once the receiver may read it, as with the API key.
    assert "${google_secret_manager_secret_iam_member.reads_webhook_signing_key}" in FUNCTION["depends_on"]


def test_the_first_deployment_adds_the_key_and_the_token_between_the_secrets_and_the_functions() -> None:
    script = (INFRA / "deploy.sh").read_text()
    phase_one = script.index(
        "\napply -target=google_secret_manager_secret.opus_api_key -target=google_secret_manager_secret.webhook_token\n"
    )
    add_key = script.index('gcloud secrets versions add "$secret"')
    add_token = script.index('gcloud secrets versions add "$token_secret"')
    phase_three = script.index('echo "== phase 3: everything else"\napply\n')
    assert phase_one < add_key < add_token < phase_three
    assert "--data-file=-" in script and "OPUS_API_KEY" in script and "read -rs" in script
    # The token is random, goes straight from openssl to Secret Manager, and only once.
    token_line = script[script.rindex("\n", 0, add_token) : add_token]
    assert "openssl rand -hex 32 |" in token_line
    assert 'if has_version "$token_secret"; then' in script
    assert "terraform output -raw webhook_token_secret" in script


def test_every_variable_the_code_reads_is_set_on_every_function() -> None:
    """All but the secrets, and OPUS_WEBHOOK_URL: config.py refuses a URL without its token, so the
    URL goes only to create-project, the one function that registers it (and that has the token)."""
    environment = infra()["locals"]["function_environment"]
    secrets = {"OPUS_API_KEY", "OPUS_WEBHOOK_TOKEN", "OPUS_WEBHOOK_SECRET"}
    assert set(config.ENV_VARS) - secrets - {"OPUS_WEBHOOK_URL"} == set(environment)
    assert one(FUNCTION["service_config"])["environment_variables"] == (
        '${merge(local.function_environment, each.value.webhook == "registers" ? '
        "{OPUS_WEBHOOK_URL = local.webhook_url} : {})}"
    )
    assert environment["OUTPUT_BUCKET"] == '${google_storage_bucket.this["output"].name}'
    assert environment["CLIP_RESULTS_TOPIC"] == "${google_pubsub_topic.clip_results.id}"
    assert environment["COPY_CLIPS"] == "${tostring(var.copy_clips)}"
    assert environment["OPUS_CLIP_URL_HOSTS"] == '${join(",", var.opus_clip_url_hosts)}'
    assert environment["SWEEP_MAX_CALLS"] == "${tostring(var.sweep_max_calls)}"
    variables = infra()["variable"]
    assert variables["copy_clips"]["default"] is True
    assert ",".join(variables["opus_clip_url_hosts"]["default"]) == config.DEFAULT_CLIP_URL_HOSTS
    assert variables["sweep_max_calls"]["default"] == config.Settings.sweep_max_calls


def test_the_clip_results_topic_keeps_a_week_and_is_an_output() -> None:
    topic = resources("google_pubsub_topic")["clip_results"]
    assert topic["name"] == "${local.prefix}-clip-results"
    assert topic["message_retention_duration"] == "604800s"
    outputs = infra()["output"]
    assert outputs["clip_results_topic"]["value"] == "${google_pubsub_topic.clip_results.id}"
    assert outputs["output_bucket"]["value"] == '${google_storage_bucket.this["output"].name}'


def test_every_bucket_is_private_and_uniform() -> None:
    [body] = resources("google_storage_bucket").values()
    assert body["for_each"] == "${local.buckets}"
    assert set(infra()["locals"]["buckets"]) == {"source", "state", "output", "function_source"}
    assert body["uniform_bucket_level_access"] is True
    assert body["public_access_prevention"] == "enforced"


def test_state_records_expire_and_the_live_function_archive_does_not() -> None:
    buckets = infra()["locals"]["buckets"]
    assert buckets["state"]["expire_days"] == "${var.state_retention_days}"
    # Replaced archives become noncurrent (versioning) and go after noncurrent_days.
    assert buckets["function_source"]["expire_days"] is None
    assert buckets["function_source"]["noncurrent_days"] == 7
    [body] = resources("google_storage_bucket").values()
    expiry = one(body["dynamic"])["lifecycle_rule"]
    assert one(one(expiry["content"])["condition"])["age"] == "${lifecycle_rule.value.age}"
    assert "each.value.expire_days == null ? [] : [{age = each.value.expire_days, prefixes = []}]" in expiry["for_each"]


def test_upload_sessions_left_behind_expire_within_a_week() -> None:
    [body] = resources("google_storage_bucket").values()
    expiry = one(body["dynamic"])["lifecycle_rule"]
    assert 'each.key == "state" ? [{age = 7, prefixes = ["sessions/"]}] : []' in expiry["for_each"]
    assert one(one(expiry["content"])["condition"])["matches_prefix"] == "${lifecycle_rule.value.prefixes}"


def test_function_source_object_name_carries_the_archive_hash() -> None:
    body = resources("google_storage_bucket_object")["functions"]
    assert "${data.archive_file.functions.output_md5}" in body["name"]
    assert infra()["data"]["archive_file"]["functions"]["source_dir"].endswith("/../functions")


def test_the_function_archive_does_not_depend_on_the_checkouts_umask() -> None:
    """Its hash names the object: a file mode that differs between machines would redeploy every function."""
    assert infra()["data"]["archive_file"]["functions"]["output_file_mode"] == "0644"


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
    assert {"dead_letter_not_empty", "video_failed", "function_errors", "project_stalled"} <= set(alerts)
    assert "two_projects_for_a_video" in alerts  # issue 24: a video billed twice is seen at once
    for alert in alerts.values():
        assert alert["notification_channels"] == "${var.notification_channels}"


# A metric's filter on jsonPayload.event or .reason: one value or a parenthesised OR of them.
FIELD_VALUES = re.compile(r'jsonPayload\.(event|reason)=(\([^)]*\)|\\"[^\\]*\\")')


def filtered_values(log_filter: str) -> dict[str, set[str]]:
    found: dict[str, set[str]] = {"event": set(), "reason": set()}
    for field, values in FIELD_VALUES.findall(log_filter):
        found[field].update(re.findall(r'\\"([^\\]+)\\"', values))
    return found


def test_log_metrics_match_the_events_the_code_logs() -> None:
    code = "\n".join(p.read_text() for p in (INFRA.parent / "functions").rglob("*.py"))
    for name, metric in resources("google_logging_metric").items():
        found = filtered_values(metric["filter"])
        assert found["event"] or found["reason"], name
        for event in found["event"]:
            assert f'event="{event}"' in code, (name, event)
        for reason in found["reason"]:  # a keyword argument, or an error class's reason attribute
            assert re.search(rf'reason ?= ?"{re.escape(reason)}"', code), (name, reason)
        if "value_extractor" in metric:  # a field the code logs with that event, as a keyword argument
            field = re.fullmatch(r"EXTRACT\(jsonPayload\.(\w+)\)", metric["value_extractor"])
            assert field and f"{field[1]}=" in code, metric["value_extractor"]


def test_the_conclusion_metrics_chart_what_the_code_logs() -> None:
    metrics = resources("google_logging_metric")
    clips_ready = '${local.function_logs} AND jsonPayload.event=\\"clips_ready\\"'
    assert metrics["clips_ready"]["filter"] == clips_ready
    assert one(metrics["clips_ready"]["metric_descriptor"])["value_type"] == "INT64"
    latency = metrics["upload_to_clips_ready"]
    assert latency["filter"] == clips_ready
    assert latency["value_extractor"] == "EXTRACT(jsonPayload.seconds_since_upload)"
    assert one(latency["metric_descriptor"]) == {"metric_kind": "DELTA", "value_type": "DISTRIBUTION", "unit": "s"}
    copied = metrics["clip_bytes_copied"]
    assert copied["filter"] == '${local.function_logs} AND jsonPayload.event=\\"clip_copied\\"'
    assert copied["value_extractor"] == "EXTRACT(jsonPayload.bytes)"
    assert one(copied["metric_descriptor"])["unit"] == "By"
    stalled = metrics["projects_stalled"]["filter"]
    assert stalled.endswith('jsonPayload.event=\\"video_failed\\" AND jsonPayload.reason=\\"project-stalled\\"')
    dashboard = resources("google_monitoring_dashboard")["pipeline"]["dashboard_json"]
    for name in ("clips_ready", "upload_to_clips_ready", "clip_bytes_copied", "projects_stalled"):
        assert f"google_logging_metric.{name}.name" in dashboard, name


def test_a_stalled_project_alerts_with_what_to_do() -> None:
    alert = resources("google_monitoring_alert_policy")["project_stalled"]
    condition = one(one(alert["conditions"])["condition_threshold"])
    assert "${google_logging_metric.projects_stalled.name}" in condition["filter"]
    assert condition["comparison"] == "COMPARISON_GT" and condition["threshold_value"] == 0
    assert "opus-pipeline retry" in one(alert["documentation"])["content"]


def test_cloud_build_tests_with_make_test_as_ci_does_and_no_deploy_rights() -> None:
    """The test build (cloudbuild.yaml) runs .ci/run, which is `make test`: scripts/system-packages.sh
    first, then lint (terraform fmt included), checkov, the schemas and pytest. It has no init, plan or
    apply step and no substitutions: its account needs no rights in the project."""
    build = yaml.safe_load((INFRA.parent / "cloudbuild.yaml").read_text())
    steps = {step["id"]: step for step in build["steps"]}
    assert list(steps) == ["terraform-binary", "test"]
    # The emulators image has the Pub/Sub emulator and Java; the stable one has neither.
    assert steps["test"]["name"] == "gcr.io/google.com/cloudsdktool/google-cloud-cli:emulators"
    script = "\n".join(steps["test"]["args"])
    assert 'PATH="/tools:$$PATH" .ci/run' in script
    # terraform reaches the test step from Terraform's image, through a shared volume.
    assert steps["terraform-binary"]["name"].startswith("hashicorp/terraform:")
    assert "cp /bin/terraform /tools/terraform" in steps["terraform-binary"]["args"][-1]
    assert steps["terraform-binary"]["volumes"] == steps["test"]["volumes"] == [{"name": "tools", "path": "/tools"}]
    ci = (INFRA.parent / ".ci" / "run").read_text()
    assert "make test" in ci
    makefile = (INFRA.parent / "Makefile").read_text()
    assert "system-packages:\n\tscripts/system-packages.sh test" in makefile
    assert "test: system-packages lint infra-check provider-schemas" in makefile
    assert "terraform fmt -check -recursive infra" in makefile
    assert "substitutions" not in build


def test_cloud_build_plans_and_applies_only_on_request_in_a_build_of_its_own() -> None:
    build = yaml.safe_load((INFRA / "cloudbuild.yaml").read_text())
    steps = {step["id"]: step for step in build["steps"]}
    assert "test" not in steps
    init = "\n".join(steps["terraform-init"]["args"])
    assert "-backend-config=bucket=${_TF_STATE_BUCKET}" in init and "-lockfile=readonly" in init
    assert steps["terraform-validate"]["args"] == ["validate"]
    plan = "\n".join(steps["terraform-plan"]["args"])
    assert "terraform plan -input=false -lock=false -out=tfplan" in plan  # the read-only plan account
    assert '"${_APPLY}" = "true"' in "\n".join(steps["terraform-apply"]["args"])
    assert '"${_APPLY}" = "true"' in "\n".join(steps["webhook-invoker-check"]["args"])
    assert build["substitutions"]["_APPLY"] == "false"


def test_monitoring_filters_use_monitoring_syntax_and_logging_filters_logging_syntax() -> None:
    locals_ = infra()["locals"]
    assert "=one_of(" in locals_["function_series"] and " OR " not in locals_["function_series"]
    assert " OR " in locals_["function_logs"]
    filters = [
        one(one(alert["conditions"])["condition_threshold"])["filter"]
        for alert in resources("google_monitoring_alert_policy").values()
        if "condition_threshold" in one(alert["conditions"])  # a log-match condition filters logs
    ]
    filters.append(resources("google_monitoring_dashboard")["pipeline"]["dashboard_json"])
    for text in filters:
        assert not re.search(r'=\(\\?"', text), text  # a Logging-style ("a" OR "b")
    cloud_run = [f for f in filters if "run.googleapis.com/" in f]
    assert cloud_run and all("${local.function_series}" in f for f in cloud_run)


def test_a_stuck_upload_event_alerts_well_before_eventarc_drops_it() -> None:
    alert = resources("google_monitoring_alert_policy")["ingest_backlog"]
    condition = one(one(alert["conditions"])["condition_threshold"])
    assert "pubsub.googleapis.com/subscription/oldest_unacked_message_age" in condition["filter"]
    assert "${local.ingest_subscription}" in condition["filter"]
    assert (
        'starts_with(\\"eventarc-${var.region}-${local.ingest_trigger_id}-sub-\\")'
        in (infra()["locals"]["ingest_subscription"])
    )
    assert condition["threshold_value"] == "${var.ingest_backlog_alert_hours * 3600}"
    hours = infra()["variable"]["ingest_backlog_alert_hours"]
    assert hours["default"] * 3600 < 24 * 3600
    assert "opus-pipeline retry" in one(alert["documentation"])["content"]


def test_the_dashboard_writes_no_zero_position_and_no_empty_grouping() -> None:
    dashboard = resources("google_monitoring_dashboard")["pipeline"]["dashboard_json"]
    assert "index % 2 == 0 ? {} : {xPos = 6}" in dashboard
    assert "index < 2 ? {} : {yPos = floor(index / 2) * 4}" in dashboard
    assert "length(tile.group) == 0 ? {} : {groupByFields = tile.group}" in dashboard


def test_the_dashboard_shows_slots_in_use_and_waiting_videos() -> None:
    metrics = resources("google_logging_metric")
    assert metrics["slots_in_use"]["value_extractor"] == "EXTRACT(jsonPayload.slots_in_use)"
    assert metrics["videos_waiting"]["value_extractor"] == "EXTRACT(jsonPayload.waiting)"
    dashboard = json.dumps(resources("google_monitoring_dashboard"))
    for name in ("slots_in_use", "videos_waiting", "admissions"):
        assert f"google_logging_metric.{name}.name" in dashboard


def test_the_webhook_receivers_request_logs_with_the_token_in_their_urls_are_excluded() -> None:
    exclusion = resources("google_logging_project_exclusion")["webhook_request_urls"]
    assert (
        "local.webhook_service" in exclusion["filter"]
        and 'log_id(\\"run.googleapis.com/requests\\")' in exclusion["filter"]
    )


def test_create_project_outlives_its_worst_case_call() -> None:
    assert FUNCTIONS["create_project"]["timeout_seconds"] >= 300


TILE = re.compile(
    r'\{title = "(?P<title>.*?)", plot = "(?P<plot>\w+)", filter = "(?P<filter>.*?)", '
    r'aligner = "(?P<aligner>\w+)", reducer = "(?P<reducer>\w+)", group = \[(?P<group>.*?)\]'
    r'(?:, period = "(?P<period>\w+)")?\}'
)


def tiles() -> dict[str, dict[str, str]]:
    """The dashboard's tiles by the logging metric they chart (platform metrics left out)."""
    dashboard = resources("google_monitoring_dashboard")["pipeline"]["dashboard_json"]
    found = {}
    for tile in TILE.finditer(dashboard):
        metric = re.search(r"google_logging_metric\.(\w+)\.name", tile["filter"])
        if metric:
            found[metric[1]] = tile.groupdict()
    return found


def test_every_log_metric_is_on_the_dashboard() -> None:
    assert set(tiles()) == set(resources("google_logging_metric"))


def test_slots_in_use_and_waiting_videos_chart_each_sweeps_exact_count() -> None:
    """A distribution's mean is exact; a percentile is interpolated inside a bucket (4 slots: 4.99)."""
    metrics = resources("google_logging_metric")
    for name in ("slots_in_use", "videos_waiting"):
        assert filtered_values(metrics[name]["filter"]) == {"event": {"sweep"}, "reason": set()}
        assert one(metrics[name]["metric_descriptor"])["value_type"] == "DISTRIBUTION"
        tile = tiles()[name]
        assert (tile["aligner"], tile["reducer"]) == ("ALIGN_DELTA", "REDUCE_MEAN"), name
    assert "${var.max_parallel_projects}" in tiles()["slots_in_use"]["title"]
    assert filtered_values(metrics["admissions"]["filter"])["event"] == {"video_waiting", "video_admitted"}
    assert tiles()["admissions"]["group"] == '"metric.label.event"'


def test_the_request_budget_and_opusclips_429s_are_counted_from_warning_lines() -> None:
    metrics = resources("google_logging_metric")
    budget = metrics["rate_budget_spent"]["filter"]
    assert "severity=WARNING" in budget
    assert filtered_values(budget) == {"event": set(), "reason": {"rate-budget"}}
    refused = metrics["opus_rate_limited"]["filter"]
    assert "severity=WARNING" in refused
    # The in-flight cap's 429 is logged as event rate_limited; the rate's as reason rate-limited.
    assert filtered_values(refused) == {"event": {"rate_limited"}, "reason": {"rate-limited"}}
    code = "\n".join(p.read_text() for p in (INFRA.parent / "functions").rglob("*.py"))
    assert "ConcurrentCapError" in code and 'event="rate_limited"' in code
    for name in ("rate_budget_spent", "opus_rate_limited"):
        assert one(metrics[name]["metric_descriptor"])["value_type"] == "INT64"
        assert (tiles()[name]["aligner"], tiles()[name]["reducer"]) == ("ALIGN_SUM", "REDUCE_SUM")


def _upper_bound(variable: str) -> int:
    condition = one(infra()["variable"][variable]["validation"])["condition"]
    return int(re.search(rf"var\.{variable} <= (\d+)", condition)[1])


def test_the_instance_caps_are_bounded_variables() -> None:
    variables = infra()["variable"]
    # Each new stream spends one of OpusClip's requests a minute on its upload link.
    assert FUNCTIONS["ingest"]["max_instances"] == "${var.ingest_max_instances}"
    assert variables["ingest_max_instances"]["default"] <= _upper_bound("ingest_max_instances") <= 20
    assert FUNCTIONS["create_project"]["max_instances"] == "${var.create_max_instances}"
    assert variables["create_max_instances"]["default"] <= _upper_bound("create_max_instances") <= 10
    for name in ("max_parallel_projects", "rate_per_minute"):
        condition = one(variables[name]["validation"])["condition"]
        assert f"var.{name} >= 1" in condition and f"floor(var.{name}) == var.{name}" in condition, name
    assert variables["max_parallel_projects"]["default"] == config.Settings.max_parallel_projects
    assert variables["rate_per_minute"]["default"] == config.Settings.rate_per_minute


def test_the_functions_serve_the_source_bucket_only_and_signatures_are_opt_in() -> None:
    """SOURCE_BUCKET is the bucket the ingest trigger watches; unsigned webhooks stay accepted by default,
    since OpusClip signs with the organisation's first key only."""
    environment = infra()["locals"]["function_environment"]
    assert environment["SOURCE_BUCKET"] == '${google_storage_bucket.this["source"].name}'
    assert environment["OPUS_WEBHOOK_REQUIRE_SIGNATURE"] == "${tostring(var.webhook_require_signature)}"
    assert infra()["variable"]["webhook_require_signature"]["default"] is False


# -- least privilege: each function is granted exactly what its code calls --------------------

GET, LIST, CREATE, DELETE, UPDATE = (
    f"storage.objects.{verb}" for verb in ("get", "list", "create", "delete", "update")
)
BUCKETS = {f'${{google_storage_bucket.this["{name}"].name}}': name for name in ("source", "state", "output")}
TOPICS = {
    f"${{google_pubsub_topic.{name}.id}}": name
    for name in ("clip_requests", "clip_results", "sweep_ticks", "ingest_requests")
}
# Traced from each entry point in functions/main.py through its use case:
# ingest streams a video (get), shows its status (objects.patch: update), keeps records, the request
# window and its upload session (get, create, and delete to replace), publishes the clip request;
# create-project shows statuses, keeps records, open/ markers and the slot table, and republishes a
# waiting video's request when its creation frees a slot; the receiver concludes (clips written and
# read back for their checksums, clip lists replaced), publishes results and ticks the sweeper; the
# sweeper also lists the open/ markers, admits waiting videos, and hands a video admitted against this
# month's credits back to ingest.
STATE = {GET, CREATE, DELETE}
CLIPS = {GET, CREATE, DELETE}
EXPECTED_ACCESS = {
    "ingest": {"source": {GET, UPDATE}, "state": STATE, "output": set(), "topics": {"clip_requests"}},
    "create_project": {"source": {UPDATE}, "state": STATE, "output": set(), "topics": {"clip_requests"}},
    "on_project_concluded": {
        "source": {UPDATE},
        "state": STATE,
        "output": CLIPS,
        "topics": {"clip_results", "sweep_ticks"},
    },
    "sweep_projects": {
        "source": {UPDATE},
        "state": STATE | {LIST},
        "output": CLIPS,
        "topics": {"clip_results", "clip_requests", "ingest_requests"},
    },
}


def permissions_of(role: str) -> set[str]:
    custom = re.fullmatch(r'\$\{google_project_iam_custom_role\.storage\["(\w+)"\]\.id\}', role)
    if custom:
        return set(infra()["locals"]["storage_roles"][custom[1]]["permissions"])
    return {role}


def functions_of(for_each: str, var: dict[str, Any] | None = None) -> set[str]:
    """The function keys a ``for_each`` over local.functions selects (its ``if`` evaluated, with the
    variables' defaults unless ``var`` is given)."""
    if for_each == "${local.functions}":
        return set(FUNCTIONS)
    assert re.fullmatch(r"\$\{\{for key, f in local\.functions : key => f if (.+)\}\}", for_each), for_each
    return set(evaluate(for_each, {"local": {"functions": FUNCTIONS}, "var": defaults() if var is None else var}))


def grantees(body: dict) -> set[str]:
    """The functions whose accounts a binding names."""
    if body["member"] == "serviceAccount:${each.value.service_account}":
        return functions_of(body["for_each"])
    account = re.fullmatch(r"\$\{google_service_account\.(\w+)\.member\}", body["member"])
    email = f"${{google_service_account.{account[1]}.email}}" if account else None
    return {key for key, f in FUNCTIONS.items() if f["service_account"] == email}


def role_for(role: str, key: str) -> str:
    """A binding's role for one function (``each.value.X ? A : B`` chosen by the function's X)."""
    choice = re.fullmatch(r"\$\{each\.value\.(\w+) \? (.+) : (.+)\}", role)
    if not choice:
        return role
    return "${" + (choice[2] if FUNCTIONS[key][choice[1]] else choice[3]) + "}"


STATE_BUCKET = '${google_storage_bucket.this["state"].name}'


def state_grants() -> dict[str, dict[str, Any]]:
    """Each function's grant in the state bucket's authoritative policy: {key: {role, outside_sessions}},
    from local.state_grants and data.google_iam_policy.state evaluated as Terraform would."""
    accounts = {f"serviceAccount:{f['service_account']}": key for key, f in FUNCTIONS.items()}
    groups = evaluate(infra()["locals"]["state_grants"], {"local": {"functions": FUNCTIONS}})
    binding = one(one(infra()["data"]["google_iam_policy"]["state"]["dynamic"])["binding"]["content"])
    role_key = re.fullmatch(r"\$\{google_project_iam_custom_role\.storage\[(.+)\]\.id\}", binding["role"])[1]
    conditioned = one(binding["dynamic"])["condition"]["for_each"]
    grants = {}
    for key, members in groups.items():
        scope = {"binding": {"key": key, "value": members}, "local": {"sessions_object_prefix": "p"}}
        role = f'${{google_project_iam_custom_role.storage["{evaluate("${" + role_key + "}", scope)}"].id}}'
        assert evaluate(binding["members"], scope) == members
        for member in members:
            grants[accounts[member]] = {"role": role, "outside_sessions": evaluate(conditioned, scope) == ["p"]}
    return grants


def test_the_state_buckets_policy_is_authoritative_and_holds_the_functions_grants_alone() -> None:
    """A new bucket's policy lets project Viewers read its objects (legacy convenience bindings); the state
    bucket holds upload session URLs, so its whole policy is set and no binding is added beside it."""
    [policy] = resources("google_storage_bucket_iam_policy").values()
    assert policy["bucket"] == STATE_BUCKET
    assert policy["policy_data"] == "${data.google_iam_policy.state.policy_data}"
    assert [b for _, _, b in bindings() if b.get("bucket") == STATE_BUCKET] == []
    assert set(state_grants()) == set(FUNCTIONS)
    # One binding per role and condition, as IAM keeps them: the policy does not drift after an apply.
    groups = evaluate(infra()["locals"]["state_grants"], {"local": {"functions": FUNCTIONS}})
    assert sorted(groups) == ["state_sweeper:outside-sessions", "state_writer", "state_writer:outside-sessions"]


def test_the_state_buckets_former_member_grants_are_forgotten_not_destroyed() -> None:
    """Destroying them would remove each function's grant from the policy the new resource sets."""
    with open(INFRA / "iam.tf") as source:
        [removed] = _clean(hcl2.load(source))["removed"]
    assert removed["from"] == "${google_storage_bucket_iam_member.writes_state}"
    assert one(removed["lifecycle"])["destroy"] is False
    assert "writes_state" not in resources("google_storage_bucket_iam_member")


def access() -> dict[str, dict[str, set[str]]]:
    """What each function may do on the three buckets and the topics, from every binding."""
    granted = {key: {"source": set(), "state": set(), "output": set(), "topics": set()} for key in FUNCTIONS}
    for key, grant in state_grants().items():
        granted[key]["state"] |= permissions_of(grant["role"])
    for _, _, body in bindings():
        for key in grantees(body):
            if body.get("bucket") in BUCKETS:
                granted[key][BUCKETS[body["bucket"]]] |= permissions_of(role_for(body["role"], key))
            elif body.get("topic") in TOPICS and body["role"] == "roles/pubsub.publisher":
                granted[key]["topics"].add(TOPICS[body["topic"]])
    return granted


def test_each_function_is_granted_exactly_what_its_code_calls() -> None:
    assert access() == EXPECTED_ACCESS


def test_the_public_receiver_can_neither_read_videos_nor_publish_clip_requests() -> None:
    receiver = access()["on_project_concluded"]
    assert GET not in receiver["source"] and LIST not in receiver["source"]
    assert "clip_requests" not in receiver["topics"]
    assert FUNCTIONS["on_project_concluded"]["admits"] is False


def test_only_ingest_may_touch_the_upload_sessions() -> None:
    code = (INFRA.parent / "functions" / "opus_pipeline" / "gcs" / "sessions.py").read_text()
    assert 'SESSIONS_PREFIX = "sessions/"' in code
    assert infra()["locals"]["sessions_object_prefix"] == (
        'projects/_/buckets/${google_storage_bucket.this["state"].name}/objects/sessions/'
    )
    binding = one(infra()["data"]["google_iam_policy"]["state"]["dynamic"])["binding"]
    condition = one(one(binding["content"])["dynamic"])["condition"]
    assert condition["for_each"] == (
        '${endswith(binding.key, ":outside-sessions") ? [local.sessions_object_prefix] : []}'
    )
    assert one(condition["content"])["expression"] == '!resource.name.startsWith(\\"${condition.value}\\")'
    assert {key for key, f in FUNCTIONS.items() if f["keeps_sessions"]} == {"ingest"}
    conditioned = {key for key, grant in state_grants().items() if grant["outside_sessions"]}
    assert conditioned == set(FUNCTIONS) - {"ingest"}


def test_no_function_can_create_or_delete_a_users_video() -> None:
    for key, granted in access().items():
        assert not granted["source"] & {CREATE, DELETE, LIST}, key


def test_the_admission_table_and_request_window_are_replaced_by_every_function() -> None:
    """Their objects are created, replaced by generation-matched writes and deleted, which need create and
    delete on objects of the state bucket."""
    code = "\n".join(p.read_text() for p in (INFRA.parent / "functions").rglob("*.py"))
    assert 'SLOTS_PREFIX = "admission/slots/"' in code and 'QUEUE_PREFIX = "admission/queue/"' in code
    assert 'SLOTS_PREFIX = "admission/rate/"' in code
    assert infra()["locals"]["function_environment"]["STATE_BUCKET"] == '${google_storage_bucket.this["state"].name}'
    assert all({GET, CREATE, DELETE} <= granted["state"] for granted in access().values())


def test_the_receiver_ticks_the_sweeper_to_admit_and_every_function_knows_the_tick_topic() -> None:
    environment = infra()["locals"]["function_environment"]
    assert environment["SWEEP_TICKS_TOPIC"] == "${google_pubsub_topic.sweep_ticks.id}"
    assert environment["OPUS_MAX_PARALLEL_PROJECTS"] == "${tostring(var.max_parallel_projects)}"
    assert environment["OPUS_RATE_PER_MINUTE"] == "${tostring(var.rate_per_minute)}"
    variables = infra()["variable"]
    assert variables["max_parallel_projects"]["default"] == 4 and variables["rate_per_minute"]["default"] == 30
    assert {key for key, f in FUNCTIONS.items() if f["admits"]} == {"create_project", "sweep_projects"}


def test_only_the_concluding_functions_write_the_output_bucket_and_publish_results() -> None:
    assert {key for key, f in FUNCTIONS.items() if f["concludes"]} == CONCLUDING
    output = '${google_storage_bucket.this["output"].name}'
    [(rtype, name, body)] = [(t, n, b) for t, n, b in bindings() if b.get("bucket") == output]
    assert (rtype, name) == ("google_storage_bucket_iam_member", "writes_output")
    assert body["for_each"] == only("concludes")
    assert permissions_of(body["role"]) == CLIPS  # replacing a clip list needs delete as well as create
    results = "${google_pubsub_topic.clip_results.id}"
    [(_, name, publisher)] = [(t, n, b) for t, n, b in bindings() if b.get("topic") == results]
    assert name == "publishes_results" and publisher["for_each"] == only("concludes")
    assert {key for key, granted in access().items() if "clip_results" in granted["topics"]} == CONCLUDING


# -- the first deployment ------------------------------------------------------------------------


def defaults() -> dict[str, Any]:
    """Every variable's default (those without one: a valid example), as var.* in an expression."""
    values = {name: body.get("default") for name, body in infra()["variable"].items()}
    values["project_id"] = "my-project"
    return values


PUBLIC_MEMBERS = ("allUsers", "allAuthenticatedUsers")


def test_by_default_no_binding_names_all_users_which_domain_restricted_sharing_refuses() -> None:
    """Organisations created since 2024-05-03 enforce iam.allowedPolicyMemberDomains; an allUsers binding
    would fail the first apply after the functions exist."""
    public = [(t, n, b) for t, n, b in bindings() if b["member"] in PUBLIC_MEMBERS]
    assert public, "the all_users choice keeps its binding"
    for rtype, name, body in public:
        assert "count" in body, (rtype, name)
        assert evaluate(body["count"], {"var": defaults()}) == 0, (rtype, name)
        assert evaluate(body["count"], {"var": {**defaults(), "webhook_access": "all_users"}}) == 1


def test_by_default_make_deploy_turns_the_receivers_invoker_iam_check_off() -> None:
    """Cloud Run's recommended way to a public service under Domain restricted sharing; the Cloud Functions
    API cannot set it, so deploy.sh and the main Cloud Build trigger do after their apply, and a check warns."""
    assert infra()["variable"]["webhook_access"]["default"] == "no_invoker_check"
    outputs = infra()["output"]
    assert outputs["webhook_access"]["value"] == "${var.webhook_access}"
    assert outputs["webhook_service"]["value"] == '${local.function_services["on_project_concluded"]}'
    script = (INFRA / "deploy.sh").read_text()
    after_apply = script[script.index("== phase 3") :]
    assert 'if [ "$(terraform output -raw webhook_access)" = no_invoker_check ]; then' in after_apply
    assert "--no-invoker-iam-check" in after_apply
    build = yaml.safe_load((INFRA / "cloudbuild.yaml").read_text())
    step = next(s for s in build["steps"] if s["id"] == "webhook-invoker-check")
    assert "--no-invoker-iam-check" in "\n".join(step["args"])
    [check] = infra()["check"].values()
    conditions = [a["condition"] for a in check["assert"]]
    assert (
        '${var.webhook_access != "no_invoker_check" || '
        "data.google_cloud_run_v2_service.webhook.invoker_iam_disabled == true}"
    ) in conditions
    assert "webhook_access" in DOCS and "--no-invoker-iam-check" in DOCS


def test_the_example_settings_name_no_notification_channel() -> None:
    with open(INFRA / "terraform.tfvars.example") as example:
        settings = _clean(hcl2.load(example))
    assert settings["notification_channels"] == []


def test_deploy_without_a_terminal_asks_for_auto_approve_before_doing_anything(tmp_path: Path) -> None:
    result = subprocess.run(
        ["bash", str(INFRA / "deploy.sh")],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        env={"PATH": os.environ["PATH"], "TF_STATE_BUCKET": "unused", "HOME": str(tmp_path)},
        timeout=30,
        check=False,
    )
    assert result.returncode == 1
    assert "AUTO_APPROVE=1 make deploy" in result.stderr and result.stdout == ""


def test_deploy_applies_without_asking_only_when_auto_approve_is_set() -> None:
    script = (INFRA / "deploy.sh").read_text()
    assert 'if [ "${AUTO_APPROVE:-}" = 1 ]; then\n  approve="-auto-approve"' in script
    assert script.count("terraform apply -input=false $approve") == 1  # in apply(), for both phases


def test_deploy_needs_application_default_credentials_and_its_tools() -> None:
    script = (INFRA / "deploy.sh").read_text()
    assert "gcloud auth application-default print-access-token" in script
    assert "for tool in terraform gcloud openssl; do" in script
    assert "gcloud auth application-default login" in DOCS and "openssl" in DOCS and "safe to run again" in DOCS


def test_ingest_requests_reach_the_ingest_function_and_only_the_sweeper_publishes_them() -> None:
    """The sweeper hands a video admitted against this month's credits back to ingest (issue 18)."""
    trigger = resources("google_eventarc_trigger")["ingest_requests"]
    assert one(trigger["matching_criteria"]) == {
        "attribute": "type",
        "value": "google.cloud.pubsub.topic.v1.messagePublished",
    }
    assert one(one(trigger["transport"])["pubsub"])["topic"] == "${google_pubsub_topic.ingest_requests.id}"
    service = one(one(trigger["destination"])["cloud_run_service"])["service"]
    assert service == '${local.function_services["ingest"]}'
    assert trigger["service_account"] == "${google_service_account.trigger.email}"
    publishers = [
        body["member"]
        for rtype, _, body in bindings()
        if rtype == "google_pubsub_topic_iam_member" and body["topic"] == "${google_pubsub_topic.ingest_requests.id}"
    ]
    assert publishers == ["${google_service_account.sweep.member}"]
    environment = infra()["locals"]["function_environment"]
    assert environment["INGEST_REQUESTS_TOPIC"] == "${google_pubsub_topic.ingest_requests.id}"


def test_running_low_on_credits_alerts_on_the_sweepers_warning_with_what_to_do() -> None:
    alert = resources("google_monitoring_alert_policy")["credits_low"]
    condition = one(one(alert["conditions"])["condition_matched_log"])
    assert filtered_values(condition["filter"])["event"] == {"credits"} and "severity=WARNING" in condition["filter"]
    assert one(one(alert["alert_strategy"])["notification_rate_limit"])["period"].endswith("s")
    assert "opus-pipeline usage" in one(alert["documentation"])["content"]


# -- issue 25: the offline checks of a first `make deploy` ----------------------------------------


def test_every_resource_that_takes_labels_gets_the_pipelines_labels_from_the_providers() -> None:
    with open(INFRA / "versions.tf") as source:
        providers = _clean(hcl2.load(source))["provider"]
    for block in providers:
        [(name, body)] = block.items()
        assert body["default_labels"] == "${local.labels}", name
    labels = infra()["locals"]["labels"]
    assert labels["app"] == "opus-clip-pipeline" and labels["deployment"] == "${var.name_prefix}"
    # Label values: lowercase letters, digits, - and _ (name_prefix's validation keeps it so).
    assert all(re.fullmatch(r"[a-z0-9_-]+", value) for value in labels.values() if "${" not in value)


def validation_of(variable: str) -> str:
    return one(infra()["variable"][variable]["validation"])["condition"]


def with_optional_defaults(variable: str, value: Any) -> Any:
    """``value`` as Terraform hands it to a validation: an object's ``optional(type, default)``
    attributes the value leaves out take their defaults."""
    kind = str(infra()["variable"][variable].get("type", ""))
    if not isinstance(value, dict) or not kind.startswith("${object("):
        return value
    filled = {name: json.loads(default) for name, default in re.findall(r'(\w+) = optional\(\w+, ("[^"]*")\)', kind)}
    return {**filled, **value}


def accepts(variable: str, value: Any) -> bool:
    var = {**defaults(), variable: value}
    var = {name: with_optional_defaults(name, val) for name, val in var.items()}
    return evaluate(validation_of(variable), {"var": var}) is True


def test_every_default_passes_its_own_validation() -> None:
    for name, body in infra()["variable"].items():
        if "validation" in body and "default" in body:
            assert accepts(name, body["default"]), name


VALIDATED = {
    "project_id": (["my-project", "opus-clips-2026"], ["My Project", "123456789012", "ab", "my-project-"]),
    "region": (["us-central1", "europe-west1", "northamerica-northeast1"], ["EU", "us-central1-a", "US"]),
    "monthly_credit_budget": ([None, 1, 500], [0, -10, 2.5]),
    "sweep_schedule": (["*/5 * * * *", "0 */2 * * MON-FRI"], ["*/5 * * *", "every 5 minutes", ""]),
    "notification_channels": (
        [[], ["projects/my-project/notificationChannels/1234567890"]],
        [["1234567890"], ["projects/p/alertPolicies/1"]],
    ),
    "webhook_access": (["no_invoker_check", "all_users", "sweeper_only"], ["public", "allUsers", ""]),
    "webhook_signing_secret_id": (
        ["", "opus-webhook-signing-key", "OpusFirstKey_1"],
        ["sk-0123456789abcdef", "projects/my-project/secrets/s", "has space", "x" * 256],
    ),
    "plan_members": (
        [[], ["serviceAccount:opus-plan@my-project.iam.gserviceaccount.com"]],
        [["opus-plan@my-project.iam.gserviceaccount.com"], ["allUsers"]],
    ),
}


@pytest.mark.parametrize("variable", sorted(VALIDATED))
def test_a_variables_validation_accepts_good_values_and_refuses_bad_ones(variable: str) -> None:
    good, bad = VALIDATED[variable]
    assert [value for value in good if not accepts(variable, value)] == []
    assert [value for value in bad if accepts(variable, value)] == []


SAMPLE_FUNCTIONS = {
    key: {"service_config": [{"service": f"projects/my-project/locations/us-central1/services/opus-{key}"}]}
    for key in FUNCTIONS
}


def eventarc_services_named_by_path(triggers: dict[str, dict]) -> list[str]:
    """Eventarc triggers whose destination.cloud_run_service.service evaluates to a resource path rather
    than a service name (Eventarc's CloudRun.service is "the name of the Cloud Run service")."""
    scope = {"google_cloudfunctions2_function": {"this": SAMPLE_FUNCTIONS}}
    scope["local"] = {"function_services": evaluate(infra()["locals"]["function_services"], scope)}
    found = []
    for name, trigger in triggers.items():
        service = evaluate(one(one(trigger["destination"])["cloud_run_service"])["service"], scope)
        if "/" in service:
            found.append(f"{name}: {service}")
    return found


def test_eventarc_triggers_name_their_cloud_run_service_not_its_path() -> None:
    triggers = resources("google_eventarc_trigger")
    assert triggers and eventarc_services_named_by_path(triggers) == []
    scope = {"google_cloudfunctions2_function": {"this": SAMPLE_FUNCTIONS}}
    assert evaluate(infra()["locals"]["function_services"], scope)["ingest"] == "opus-ingest"


def test_the_eventarc_check_catches_a_destination_given_the_full_path() -> None:
    planted = json.loads(json.dumps(resources("google_eventarc_trigger")))
    service = one(one(planted["ingest_requests"]["destination"])["cloud_run_service"])
    service["service"] = service_of("ingest")  # the function's service_config[0].service

    assert eventarc_services_named_by_path(planted) == [
        "ingest_requests: projects/my-project/locations/us-central1/services/opus-ingest"
    ]


def test_event_grants_get_the_propagation_time_googles_modules_give_them() -> None:
    """180 s, as terraform-google-bigquery's data_warehouse waited for Eventarc (the failure is provider
    issue #25294's); the comment cites where the figure comes from."""
    sleep = resources("time_sleep")["event_grants_propagate"]
    assert int(sleep["create_duration"].removesuffix("s")) >= 180
    text = (INFRA / "iam.tf").read_text()
    assert "terraform-google-bigquery" in text and "#25294" in text


def apply_retries() -> list[str]:
    script = (INFRA / "deploy.sh").read_text()
    return re.search(r'^consistency_errors="(.*)"$', script, re.M)[1].split("|")


def test_deploy_applies_again_only_after_documented_eventual_consistency_errors() -> None:
    assert apply_retries() == [
        "Cannot find metric",
        "If you recently started to use Eventarc",
        "GCS service account requires the Pub/Sub Publisher",
        "If you enabled this API recently",
    ]
    script = (INFRA / "deploy.sh").read_text()
    assert 'grep -Eq "$consistency_errors" "$errors"' in script and "for attempt in 1 2 3 4; do" in script


def test_deploy_runs_on_bash_3_2() -> None:
    """macOS ships bash 3.2: no associative arrays, mapfile, case conversion, nor $! after >(...)."""
    script = (INFRA / "deploy.sh").read_text()
    code = "\n".join(line for line in script.splitlines() if not line.lstrip().startswith("#"))
    for construct in ("declare -A", "local -A", "mapfile", "readarray", ",,}", "^^}", ">(", '"$!"', "$!"):
        assert construct not in code, construct


PLAN_READS = {
    "google_project_service": {"serviceusage.services.get"},
    "google_project_iam_member": {"resourcemanager.projects.getIamPolicy"},
    "google_project_iam_custom_role": {"iam.roles.get"},
    "google_storage_bucket": {"storage.buckets.get"},
    "google_storage_bucket_iam_member": {"storage.buckets.getIamPolicy"},
    "google_storage_bucket_iam_policy": {"storage.buckets.getIamPolicy"},
    "google_service_account": {"iam.serviceAccounts.get"},
    "google_service_account_iam_member": {"iam.serviceAccounts.getIamPolicy"},
    "google_pubsub_topic": {"pubsub.topics.get"},
    "google_pubsub_topic_iam_member": {"pubsub.topics.getIamPolicy"},
    "google_pubsub_subscription": {"pubsub.subscriptions.get"},
    "google_pubsub_subscription_iam_member": {"pubsub.subscriptions.getIamPolicy"},
    "google_cloud_scheduler_job": {"cloudscheduler.jobs.get"},
    "google_eventarc_trigger": {"eventarc.triggers.get"},
    "google_cloudfunctions2_function": {"cloudfunctions.functions.get"},
    "google_cloud_run_v2_service_iam_member": {"run.services.getIamPolicy", "run.services.get"},
    "google_artifact_registry_repository": {"artifactregistry.repositories.get"},
    "google_artifact_registry_repository_iam_member": {"artifactregistry.repositories.getIamPolicy"},
    "google_secret_manager_secret": {"secretmanager.secrets.get"},
    "google_secret_manager_secret_iam_member": {"secretmanager.secrets.getIamPolicy"},
    "google_logging_metric": {"logging.logMetrics.get"},
    "google_logging_project_exclusion": {"logging.exclusions.get"},
    "google_monitoring_alert_policy": {"monitoring.alertPolicies.get"},
    "google_monitoring_dashboard": {"monitoring.dashboards.get"},
    # Read through plan_members on the archive's bucket alone (storage.tf), never from the project role.
    "google_storage_bucket_object": set(),
    # Created once (generateServiceIdentity; the resource cannot be updated or destroyed); local.
    "google_project_service_identity": set(),
    "time_sleep": set(),
}


def test_the_plan_accounts_role_reads_every_resource_type_and_nothing_else() -> None:
    role = yaml.safe_load((INFRA / "plan-role.yaml").read_text())
    permissions = set(role["includedPermissions"])
    assert set(infra()["resource"]) == set(PLAN_READS)
    missing = {rtype: needed - permissions for rtype, needed in PLAN_READS.items() if needed - permissions}
    assert missing == {}
    # Configuration and policies only: no object, no secret value, no change.
    assert all(re.search(r"\.(get|list|getIamPolicy)$", p) for p in permissions), permissions
    assert not any(p.startswith(("storage.objects.", "secretmanager.versions.")) for p in permissions)
    reader = resources("google_storage_bucket_iam_member")["plan_reads_source"]
    assert reader["bucket"] == '${google_storage_bucket.this["function_source"].name}'
    assert reader["role"] == "roles/storage.objectViewer" and reader["for_each"] == "${toset(var.plan_members)}"
    plan_grants = [line for line in DOCS.splitlines() if "--member=serviceAccount:opus-plan@" in line]
    assert plan_grants and not any("--role=roles/viewer" in line for line in plan_grants)
    assert any("--role=projects/PROJECT/roles/opus_plan" in line for line in plan_grants)


def test_the_documented_deployer_roles_include_the_custom_role_administrator() -> None:
    """iam.tf defines custom roles (google_project_iam_custom_role), which Editor cannot create."""
    assert resources("google_project_iam_custom_role")
    for role in ("roles/iam.roleAdmin", "roles/iam.securityAdmin", "roles/iam.serviceAccountAdmin"):
        assert role in DOCS, role
    readme = (INFRA.parent / "README.md").read_text()
    assert "roles/iam.roleAdmin" in readme and "docs/deploying.md" in readme


# -- deploy.sh run against stand-in gcloud and terraform commands (the real ones need a project) --

FAKE_TERRAFORM = """#!/usr/bin/env bash
echo "terraform $*" >> "$CALLS"
case "$1" in
  output)
    case "$3" in
      api_key_secret) echo opus-opus-api-key ;;
      webhook_token_secret) echo opus-opus-webhook-token ;;
      webhook_access) echo "${FAKE_WEBHOOK_ACCESS:-no_invoker_check}" ;;
      webhook_service) echo opus-webhook ;;
      region) echo europe-west1 ;;
    esac ;;
  apply)
    tries=$(cat "$CALLS.applies" 2>/dev/null || echo 0)
    echo $((tries + 1)) > "$CALLS.applies"
    if [ "$tries" -lt "${FAKE_APPLY_FAILURES:-0}" ]; then
      echo "Error: $FAKE_APPLY_ERROR" >&2
      exit 1
    fi ;;
esac
"""

FAKE_GCLOUD = """#!/usr/bin/env bash
echo "gcloud $*" >> "$CALLS"
case "$*" in
  "storage buckets describe"*) [ -n "${FAKE_BUCKET_EXISTS:-}" ] ;;
  "secrets versions list"*) [ -z "${FAKE_HAS_VERSION:-}" ] || echo 1 ;;
  "secrets versions access"*) printf %s "${FAKE_CURRENT_KEY:-}" ;;
  "secrets versions add"*) cat > /dev/null ;;
esac
"""


def run_deploy(tmp_path: Path, **env: str) -> tuple[subprocess.CompletedProcess, list[str]]:
    """infra/deploy.sh in a copy of infra/ (under tmp_path, created) with terraform.tfvars, gcloud and
    terraform stand-ins that record their arguments, and a sleep that does not wait."""
    infra_copy = tmp_path / "infra"
    infra_copy.mkdir(parents=True)
    (infra_copy / "deploy.sh").write_text((INFRA / "deploy.sh").read_text())
    (infra_copy / "terraform.tfvars").write_text('project_id = "my-project"\nregion     = "europe-west1"\n')
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for name, text in (("terraform", FAKE_TERRAFORM), ("gcloud", FAKE_GCLOUD), ("sleep", "#!/bin/sh\n")):
        (bin_dir / name).write_text(text)
        (bin_dir / name).chmod(0o755)
    calls = tmp_path / "calls"
    result = subprocess.run(
        ["bash", str(infra_copy / "deploy.sh")],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        env={
            "PATH": f"{bin_dir}:{os.environ['PATH']}",
            "HOME": str(tmp_path),
            "CALLS": str(calls),
            "TF_STATE_BUCKET": "my-tf-state",
            "AUTO_APPROVE": "1",
            "FAKE_BUCKET_EXISTS": "1",
            "FAKE_HAS_VERSION": "1",
            **env,
        },
        timeout=60,
        check=False,
    )
    return result, calls.read_text().splitlines() if calls.exists() else []


def test_deploy_adds_no_key_version_when_the_key_did_not_change(tmp_path: Path) -> None:
    result, calls = run_deploy(tmp_path, OPUS_API_KEY="k-123", FAKE_CURRENT_KEY="k-123")
    assert result.returncode == 0, result.stderr
    assert not any(c.startswith("gcloud secrets versions add opus-opus-api-key") for c in calls)
    assert "already holds this key; no new version" in result.stdout
    assert "k-123" not in result.stdout + result.stderr + "\n".join(calls)


def test_deploy_adds_a_key_version_when_the_key_changed(tmp_path: Path) -> None:
    result, calls = run_deploy(tmp_path, OPUS_API_KEY="k-456", FAKE_CURRENT_KEY="k-123")
    assert result.returncode == 0, result.stderr
    assert "gcloud secrets versions add opus-opus-api-key --project=my-project --data-file=-" in calls


def test_deploy_stops_on_a_missing_state_bucket_unless_asked_to_create_it(tmp_path: Path) -> None:
    result, calls = run_deploy(tmp_path, FAKE_BUCKET_EXISTS="")
    assert result.returncode == 1
    assert "CREATE_STATE_BUCKET=1" in result.stderr
    assert not any(c.startswith("terraform") for c in calls)


def test_deploy_creates_a_private_versioned_state_bucket_on_request(tmp_path: Path) -> None:
    result, calls = run_deploy(tmp_path, FAKE_BUCKET_EXISTS="", CREATE_STATE_BUCKET="1")
    assert result.returncode == 0, result.stderr
    create = next(c for c in calls if c.startswith("gcloud storage buckets create"))
    assert "gs://my-tf-state --project=my-project --location=europe-west1" in create
    assert "--uniform-bucket-level-access --public-access-prevention" in create
    assert "gcloud storage buckets update gs://my-tf-state --versioning" in calls


def test_deploy_stops_when_a_tool_is_missing(tmp_path: Path) -> None:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "bash").symlink_to(subprocess.run(["which", "bash"], capture_output=True, text=True).stdout.strip())
    result = subprocess.run(
        ["bash", str(INFRA / "deploy.sh")],
        capture_output=True,
        text=True,
        env={"PATH": str(bin_dir), "TF_STATE_BUCKET": "b", "AUTO_APPROVE": "1", "HOME": str(tmp_path)},
        timeout=30,
        check=False,
    )
    assert result.returncode == 1 and "terraform is needed on PATH" in result.stderr


@pytest.mark.parametrize("error", apply_retries())
def test_deploy_applies_again_after_an_eventual_consistency_error(tmp_path: Path, error: str) -> None:
    result, calls = run_deploy(tmp_path, FAKE_APPLY_FAILURES="1", FAKE_APPLY_ERROR=f"googleapi: 400 {error} ...")
    assert result.returncode == 0, result.stderr
    assert error in result.stderr  # shown as it came
    assert sum(c.startswith("terraform apply") for c in calls) == 3  # phase 1 twice, phase 3 once


def test_deploy_stops_on_any_other_error_and_gives_up_after_four_tries(tmp_path: Path) -> None:
    result, calls = run_deploy(
        tmp_path / "once", FAKE_APPLY_FAILURES="1", FAKE_APPLY_ERROR="Error 403: permission denied"
    )
    assert result.returncode == 1
    assert sum(c.startswith("terraform apply") for c in calls) == 1
    result, calls = run_deploy(tmp_path / "again", FAKE_APPLY_FAILURES="9", FAKE_APPLY_ERROR="Cannot find metric(s)")
    assert result.returncode == 1
    assert sum(c.startswith("terraform apply") for c in calls) == 4


def test_deploy_turns_the_receivers_invoker_check_off_only_for_no_invoker_check(tmp_path: Path) -> None:
    result, calls = run_deploy(tmp_path / "default")
    assert result.returncode == 0, result.stderr
    update = "gcloud run services update opus-webhook --region=europe-west1 --project=my-project"
    assert f"{update} --no-invoker-iam-check --quiet" in calls
    result, calls = run_deploy(tmp_path / "all_users", FAKE_WEBHOOK_ACCESS="all_users")
    assert result.returncode == 0, result.stderr
    assert not any(c.startswith("gcloud run services update") for c in calls)
