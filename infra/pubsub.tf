# Ingest publishes one clip request per uploaded video; a push subscription delivers it to the
# create-project function, and requests that keep failing move to a dead-letter topic whose
# pull subscription keeps them for a week, so nothing is lost. A concluded project is published
# to clip-results for other systems; Cloud Scheduler's ticks drive the sweeper.

resource "google_pubsub_topic" "clip_requests" {
  # checkov:skip=CKV_GCP_83: messages hold ids and preferences, no video or secret; Google-managed encryption suffices
  name                       = "${local.prefix}-clip-requests"
  message_retention_duration = "86400s"

  depends_on = [google_project_service.this]
}

resource "google_pubsub_topic" "dead_letter" {
  # checkov:skip=CKV_GCP_83: as clip_requests
  name = "${local.prefix}-clip-requests-dead-letter"

  depends_on = [google_project_service.this]
}

resource "google_pubsub_subscription" "create_project_push" {
  name                       = "${local.prefix}-create-project-push"
  topic                      = google_pubsub_topic.clip_requests.id
  ack_deadline_seconds       = 300
  message_retention_duration = "604800s"

  push_config {
    push_endpoint = google_cloudfunctions2_function.this["create_project"].service_config[0].uri

    oidc_token {
      service_account_email = google_service_account.push.email
      audience              = google_cloudfunctions2_function.this["create_project"].service_config[0].uri
    }
  }

  retry_policy {
    minimum_backoff = "10s"
    maximum_backoff = "600s"
  }

  dead_letter_policy {
    dead_letter_topic     = google_pubsub_topic.dead_letter.id
    max_delivery_attempts = var.dead_letter_max_attempts
  }

  expiration_policy {
    ttl = ""
  }
}

resource "google_pubsub_subscription" "dead_letter" {
  name                       = "${local.prefix}-clip-requests-dead-letter"
  topic                      = google_pubsub_topic.dead_letter.id
  ack_deadline_seconds       = 60
  message_retention_duration = "604800s"
  retain_acked_messages      = true

  expiration_policy {
    ttl = ""
  }
}

# One message per concluded project (clips ready, or failed), for whatever subscribes; this
# pipeline does not. Kept a week so a subscription created later can seek back to the results it missed.
resource "google_pubsub_topic" "clip_results" {
  # checkov:skip=CKV_GCP_83: messages hold ids, counts and gs:// links, no video or secret; Google-managed encryption suffices
  name                       = "${local.prefix}-clip-results"
  message_retention_duration = "604800s"

  depends_on = [google_project_service.this]
}

# The sweeper's clock: Cloud Scheduler publishes a tick, the sweeper's Eventarc trigger delivers it.
resource "google_pubsub_topic" "sweep_ticks" {
  # checkov:skip=CKV_GCP_83: a tick carries no data worth encrypting with a key of our own
  name = "${local.prefix}-sweep-ticks"

  depends_on = [google_project_service.this]
}

# Cloud Scheduler publishes as its own service agent, and a job may publish to any topic of its
# project (Cloud Scheduler, "Access control with IAM"): no grant on the topic, as in the provider's
# example scheduler_job_pubsub.
resource "google_cloud_scheduler_job" "sweep" {
  name        = "${local.prefix}-sweep"
  description = "Ticks the opus-clip-pipeline sweeper, which concludes projects whose webhook got lost."
  region      = var.region
  schedule    = var.sweep_schedule
  time_zone   = "Etc/UTC"

  pubsub_target {
    topic_name = google_pubsub_topic.sweep_ticks.id
    # Pub/Sub refuses a message with neither data nor attributes; the sweeper reads neither.
    data = base64encode("tick")
  }

  depends_on = [google_project_service.this]
}

# The sweeper hands a video that waited for this month's credits back to ingest here, once they
# suffice; an Eventarc trigger of its own delivers it to the ingest function (functions/main.py
# on_video_uploaded takes both event types). A request carries only the object's name and generation.
resource "google_pubsub_topic" "ingest_requests" {
  # checkov:skip=CKV_GCP_83: a request names an object and its generation, no video or secret
  name = "${local.prefix}-ingest-requests"

  depends_on = [google_project_service.this]
}

resource "google_eventarc_trigger" "ingest_requests" {
  name            = "${local.prefix}-ingest-requests"
  location        = var.region
  service_account = google_service_account.trigger.email

  matching_criteria {
    attribute = "type"
    value     = "google.cloud.pubsub.topic.v1.messagePublished"
  }

  # Eventarc's CloudRun.service is the service's name, with its region beside it; the function's
  # service_config[0].service is the full projects/…/services/NAME path (local.function_services).
  destination {
    cloud_run_service {
      service = local.function_services["ingest"]
      region  = var.region
    }
  }

  transport {
    pubsub {
      topic = google_pubsub_topic.ingest_requests.id
    }
  }

  depends_on = [time_sleep.event_grants_propagate, google_cloud_run_v2_service_iam_member.trigger_invokes_ingest]
}
