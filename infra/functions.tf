# Every function deploys the same source (functions/) with its own entry point, service account
# and limits. A new function is one more entry here (event_bucket = null: no Eventarc trigger).

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
      max_instances   = var.ingest_max_instances
      service_account = google_service_account.ingest.email
      event_bucket    = google_storage_bucket.this["source"].name
    }
    create_project = {
      name            = local.create_service
      description     = "Creates the OpusClip clip project for each clip request pushed from Pub/Sub, once."
      entry_point     = "create_clip_project"
      memory          = "256Mi"
      cpu             = null
      timeout_seconds = 120
      max_instances   = var.create_max_instances
      service_account = google_service_account.create_project.email
      event_bucket    = null # fed by the push subscription in pubsub.tf
    }
  }
}

resource "google_cloudfunctions2_function" "this" {
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
    ingress_settings                 = "ALLOW_INTERNAL_ONLY" # Eventarc and Pub/Sub in the same project count as internal
    all_traffic_on_latest_revision   = true
    service_account_email            = each.value.service_account
    environment_variables            = local.function_environment

    # Resolved before an instance starts, and main.py refuses to start without it: the secret must
    # have a version before this apply (infra/deploy.sh adds it between its two phases).
    secret_environment_variables {
      key        = "OPUS_API_KEY"
      project_id = var.project_id
      secret     = google_secret_manager_secret.opus_api_key.secret_id
      version    = "latest"
    }
  }

  dynamic "event_trigger" {
    for_each = each.value.event_bucket == null ? [] : [each.value.event_bucket]
    content {
      trigger_region        = var.region
      event_type            = "google.cloud.storage.object.v1.finalized"
      retry_policy          = "RETRY_POLICY_RETRY"
      service_account_email = google_service_account.trigger.email

      event_filters {
        attribute = "bucket"
        value     = event_trigger.value
      }
    }
  }

  depends_on = [
    time_sleep.build_grants_propagate,
    time_sleep.event_grants_propagate,
    google_secret_manager_secret_iam_member.reads_key,
  ]
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
