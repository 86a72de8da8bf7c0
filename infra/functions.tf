# Every function deploys the same source (functions/) with its own entry point, service account
# and limits. A new function is one more entry here. trigger: the Eventarc trigger (null: none,
# the function is called over HTTP). webhook: "registers" gets OPUS_WEBHOOK_URL and the token to
# put in it, "receives" the token to check; config.py refuses a URL without its token. concludes:
# copies clips into the output bucket and publishes results. reads_videos, keeps_sessions,
# lists_state and admits: what else its code does (iam.tf grants exactly these).

locals {
  functions = {
    ingest = {
      name        = local.ingest_service
      description = "Streams each video finalized in the source bucket into OpusClip's resumable upload."
      entry_point = "on_video_uploaded"
      # Two chunks plus the runtime; the event-function ceiling is 540 s, UPLOAD_DEADLINE_SECONDS stays below it.
      memory          = var.ingest_memory
      cpu             = "1"
      timeout_seconds = 540
      # How many videos stream at once (one per instance). Bounded, not for memory (each instance
      # has its own two chunks) but because each new stream spends one of OpusClip's requests a
      # minute on its upload link, and projects start no sooner for more of them: the slot table
      # (max_parallel_projects) paces a burst, not the upload speed.
      max_instances   = var.ingest_max_instances
      service_account = google_service_account.ingest.email
      ingress         = "ALLOW_INTERNAL_ONLY" # Eventarc in the same project counts as internal
      webhook         = null
      concludes       = false
      reads_videos    = true
      keeps_sessions  = true
      lists_state     = false
      admits          = false # publishes each upload's clip request (ingest_publishes in iam.tf)
      trigger = {
        event_type      = "google.cloud.storage.object.v1.finalized"
        retry_policy    = "RETRY_POLICY_RETRY"
        service_account = google_service_account.trigger.email
        bucket          = google_storage_bucket.this["source"].name
        topic           = null
      }
    }
    create_project = {
      name        = local.create_service
      description = "Creates the OpusClip clip project for each clip request pushed from Pub/Sub, once."
      entry_point = "create_clip_project"
      memory      = "256Mi"
      cpu         = null
      # Worst case: a minute's wait for the request budget, then the call itself (up to 70 s), and a
      # short 429 retry: the lease is renewed while the instance lives, and a timeout must not cut
      # a call OpusClip may already have accepted (a redelivery would create a second project).
      timeout_seconds = 300
      # OpusClip's caps are kept by the shared slot table and request budget in STATE_BUCKET, not by
      # this; a few instances only let a burst's admissions overlap. Kept small: each one that wins a
      # slot may wait up to a minute for the budget, and more would only wait side by side.
      max_instances   = var.create_max_instances
      service_account = google_service_account.create_project.email
      ingress         = "ALLOW_INTERNAL_ONLY" # Pub/Sub push in the same project counts as internal
      webhook         = "registers"
      concludes       = false
      reads_videos    = false
      keeps_sessions  = false
      lists_state     = false
      admits          = true
      trigger         = null # fed by the push subscription in pubsub.tf
    }
    on_project_concluded = {
      name        = local.webhook_service
      description = "OpusClip's webhook: a hint that a project ended; asks OpusClip and brings the clips back."
      entry_point = "on_project_concluded"
      # Clips are streamed through one 8 MiB chunk at a time; copying a project's clips can take minutes.
      memory          = "512Mi"
      cpu             = null
      timeout_seconds = 540
      # The shared request budget keeps every call within OpusClip's limit; a few instances suffice
      # for the few projects that conclude at once (at most max_parallel_projects run).
      max_instances   = 3
      service_account = google_service_account.webhook.email
      # The one public function: OpusClip calls it from the internet. The URL's secret token (and
      # the signature, when sent) is what admits a call, and the receiver trusts nothing but
      # OpusClip's own answer about the project (functions/opus_pipeline/domain/webhook.py).
      ingress        = "ALLOW_ALL"
      webhook        = "receives"
      concludes      = true
      reads_videos   = false
      keeps_sessions = false
      lists_state    = false
      admits         = false # frees its slot and ticks the sweeper, which admits
      trigger        = null
    }
    sweep_projects = {
      name            = local.sweep_service
      description     = "Every few minutes, looks at running projects whose webhook got lost and concludes those that ended."
      entry_point     = "sweep_projects"
      memory          = "512Mi"
      cpu             = null
      timeout_seconds = 540
      # One sweep at a time: an overlapping one would only spend OpusClip requests on the same projects.
      max_instances   = 1
      service_account = google_service_account.sweep.email
      ingress         = "ALLOW_INTERNAL_ONLY" # Eventarc in the same project counts as internal
      webhook         = null
      concludes       = true
      reads_videos    = false
      keeps_sessions  = false
      lists_state     = true
      admits          = true
      trigger = {
        event_type = "google.cloud.pubsub.topic.v1.messagePublished"
        # A failed tick is not redelivered: the next one comes within sweep_schedule anyway.
        retry_policy    = "RETRY_POLICY_DO_NOT_RETRY"
        service_account = google_service_account.sweep_trigger.email
        bucket          = null
        topic           = google_pubsub_topic.sweep_ticks.id
      }
    }
  }
}

resource "google_cloudfunctions2_function" "this" {
  # checkov:skip=CKV_GCP_124: only on_project_concluded allows all ingress, OpusClip calls it from the internet (see its entry in local.functions)
  for_each = local.functions

  name        = each.value.name
  location    = var.region
  description = each.value.description

  build_config {
    runtime           = "python312"
    entry_point       = each.value.entry_point
    service_account   = google_service_account.build.id
    docker_repository = google_artifact_registry_repository.functions.id

    source {
      storage_source {
        bucket = google_storage_bucket.this["function_source"].name
        object = google_storage_bucket_object.functions.name
      }
    }
  }

  service_config {
    available_memory                 = each.value.memory
    available_cpu                    = each.value.cpu
    timeout_seconds                  = each.value.timeout_seconds
    max_instance_count               = each.value.max_instances
    max_instance_request_concurrency = 1
    ingress_settings                 = each.value.ingress
    all_traffic_on_latest_revision   = true
    service_account_email            = each.value.service_account
    environment_variables            = merge(local.function_environment, each.value.webhook == "registers" ? { OPUS_WEBHOOK_URL = local.webhook_url } : {})

    # Resolved before an instance starts, and main.py refuses to start without them: the secrets
    # must have a version before this apply (infra/deploy.sh adds them between its two phases).
    secret_environment_variables {
      key        = "OPUS_API_KEY"
      project_id = var.project_id
      secret     = google_secret_manager_secret.opus_api_key.secret_id
      version    = "latest"
    }

    dynamic "secret_environment_variables" {
      for_each = each.value.webhook == null ? [] : [google_secret_manager_secret.webhook_token.secret_id]
      content {
        key        = "OPUS_WEBHOOK_TOKEN"
        project_id = var.project_id
        secret     = secret_environment_variables.value
        version    = "latest"
      }
    }

    # The key OpusClip signs webhooks with (its workspace's first API key), when OPUS_API_KEY is
    # another one: a secret of the operator's own (webhook_signing_secret_id), for the receiver alone,
    # the one function that verifies signatures. Unset: no block, nothing changes.
    dynamic "secret_environment_variables" {
      for_each = each.value.webhook == "receives" && var.webhook_signing_secret_id != "" ? [var.webhook_signing_secret_id] : []
      content {
        key        = "OPUS_WEBHOOK_SECRET"
        project_id = var.project_id
        secret     = secret_environment_variables.value
        version    = "latest"
      }
    }
  }

  dynamic "event_trigger" {
    for_each = each.value.trigger == null ? [] : [each.value.trigger]
    content {
      trigger_region        = var.region
      event_type            = event_trigger.value.event_type
      retry_policy          = event_trigger.value.retry_policy
      service_account_email = event_trigger.value.service_account
      pubsub_topic          = event_trigger.value.topic

      dynamic "event_filters" {
        for_each = event_trigger.value.bucket == null ? [] : [event_trigger.value.bucket]
        content {
          attribute = "bucket"
          value     = event_filters.value
        }
      }
    }
  }

  depends_on = [
    time_sleep.build_grants_propagate,
    time_sleep.event_grants_propagate,
    google_secret_manager_secret_iam_member.reads_key,
    google_secret_manager_secret_iam_member.reads_webhook_token,
    google_secret_manager_secret_iam_member.reads_webhook_signing_key,
  ]
}

# Each function's Cloud Run service by its name alone. service_config[0].service is the full
# projects/…/locations/…/services/NAME path, which IAM bindings accept; Eventarc's destination
# (CloudRun.service: "the name of the Cloud Run service", the region beside it) and the Cloud Run
# data source (which builds the path itself) take the last segment only.
locals {
  function_services = {
    for key, f in google_cloudfunctions2_function.this : key => element(reverse(split("/", f.service_config[0].service)), 0)
  }
}

# The URL create-project registers (local.webhook_url) is computed, not read from the receiver: after
# each apply, confirm the receiver's Cloud Run service serves it, and that OpusClip's calls can reach
# it. A failed check warns, it does not undo the apply; projects created meanwhile would call a URL
# nobody answers, and the sweeper concludes them instead.
check "webhook_url_serves_the_receiver" {
  data "google_cloud_run_v2_service" "webhook" {
    name     = local.function_services["on_project_concluded"]
    location = var.region
  }

  assert {
    condition     = contains(data.google_cloud_run_v2_service.webhook.urls, local.webhook_url)
    error_message = "The webhook receiver does not serve ${local.webhook_url}, the URL create-project registers with OpusClip; its URLs are ${join(", ", data.google_cloud_run_v2_service.webhook.urls)}."
  }

  # make deploy turns the check off right after the apply that creates the receiver, so the first
  # apply warns here once; after an apply without make deploy (Cloud Build's main trigger does it in
  # a step of its own) it says what to run.
  assert {
    condition     = var.webhook_access != "no_invoker_check" || data.google_cloud_run_v2_service.webhook.invoker_iam_disabled == true
    error_message = "OpusClip's webhooks are refused: the receiver's invoker IAM check is on (webhook_access = no_invoker_check). infra/deploy.sh turns it off after each apply; otherwise run: gcloud run services update ${local.function_services["on_project_concluded"]} --region=${var.region} --project=${var.project_id} --no-invoker-iam-check"
  }
}

# The functions' images. Cloud Functions would otherwise create gcf-artifacts on first deploy,
# which cannot be bound before it exists; owning the repository lets iam.tf scope the build's
# push right to it. Same project and region as the functions, so Cloud Run pulls with its own agent.
resource "google_artifact_registry_repository" "functions" {
  # checkov:skip=CKV_GCP_84: build images of public-source code; Google-managed encryption suffices
  repository_id = "${local.prefix}-functions"
  location      = var.region
  format        = "DOCKER"
  description   = "Images of the opus-clip-pipeline functions."

  # Every code change builds new images; the last few are all a rollback needs.
  cleanup_policy_dry_run = false
  cleanup_policies {
    id     = "keep-recent"
    action = "KEEP"
    most_recent_versions {
      keep_count = 10
    }
  }
  cleanup_policies {
    id     = "delete-old"
    action = "DELETE"
    condition {
      older_than = "2592000s"
    }
  }

  depends_on = [google_project_service.this]
}
