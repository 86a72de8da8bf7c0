# Both functions deploy the same source (functions/) with different entry points.

resource "google_cloudfunctions2_function" "ingest" {
  name        = local.ingest_service
  location    = var.region
  description = "Streams each video finalized in the source bucket into OpusClip's resumable upload."

  build_config {
    runtime         = "python312"
    entry_point     = "on_video_uploaded"
    service_account = google_service_account.build.id

    source {
      storage_source {
        bucket = google_storage_bucket.this["function_source"].name
        object = google_storage_bucket_object.functions.name
      }
    }
  }

  service_config {
    # Two chunks plus the runtime; the event-function ceiling is 540 s, UPLOAD_DEADLINE_SECONDS stays below it.
    available_memory                 = var.ingest_memory
    available_cpu                    = "1"
    timeout_seconds                  = 540
    max_instance_count               = var.ingest_max_instances
    max_instance_request_concurrency = 1
    ingress_settings                 = "ALLOW_INTERNAL_ONLY"
    all_traffic_on_latest_revision   = true
    service_account_email            = google_service_account.ingest.email
    environment_variables            = local.function_environment

    secret_environment_variables {
      key        = "OPUS_API_KEY"
      project_id = var.project_id
      secret     = google_secret_manager_secret.opus_api_key.secret_id
      version    = "latest"
    }
  }

  event_trigger {
    trigger_region        = var.region
    event_type            = "google.cloud.storage.object.v1.finalized"
    retry_policy          = "RETRY_POLICY_RETRY"
    service_account_email = google_service_account.trigger.email

    event_filters {
      attribute = "bucket"
      value     = google_storage_bucket.this["source"].name
    }
  }

  depends_on = [
    google_project_iam_member.gcs_agent_publisher,
    google_project_iam_member.trigger_event_receiver,
    google_secret_manager_secret_iam_member.ingest_reads_key,
    google_project_iam_member.build,
    google_storage_bucket_iam_member.build_reads_source,
  ]
}

resource "google_cloudfunctions2_function" "create_project" {
  name        = local.create_service
  location    = var.region
  description = "Creates the OpusClip clip project for each clip request pushed from Pub/Sub, once."

  build_config {
    runtime         = "python312"
    entry_point     = "create_clip_project"
    service_account = google_service_account.build.id

    source {
      storage_source {
        bucket = google_storage_bucket.this["function_source"].name
        object = google_storage_bucket_object.functions.name
      }
    }
  }

  service_config {
    available_memory                 = "256Mi"
    timeout_seconds                  = 120
    max_instance_count               = var.create_max_instances
    max_instance_request_concurrency = 1
    ingress_settings                 = "ALLOW_INTERNAL_ONLY" # Pub/Sub in the same project counts as internal
    all_traffic_on_latest_revision   = true
    service_account_email            = google_service_account.create_project.email
    environment_variables            = local.function_environment

    secret_environment_variables {
      key        = "OPUS_API_KEY"
      project_id = var.project_id
      secret     = google_secret_manager_secret.opus_api_key.secret_id
      version    = "latest"
    }
  }

  depends_on = [
    google_secret_manager_secret_iam_member.create_reads_key,
    google_project_iam_member.build,
    google_storage_bucket_iam_member.build_reads_source,
  ]
}
