output "source_bucket" {
  description = "Upload videos here: gcloud storage cp talk.mp4 gs://<this>/"
  value       = google_storage_bucket.this["source"].name
}

output "state_bucket" {
  description = "Private per-video state records (STATE_BUCKET for the opus-pipeline CLI)."
  value       = google_storage_bucket.this["state"].name
}

output "output_bucket" {
  description = "Where each finished project's clips and clip list (manifest) are written."
  value       = google_storage_bucket.this["output"].name
}

output "clip_results_topic" {
  description = "Subscribe here for one message per concluded project (clips ready, or failed)."
  value       = google_pubsub_topic.clip_results.id
}

output "webhook_url" {
  description = "The public webhook receiver; create-project registers it, with the secret token, on every project."
  value       = local.webhook_url
}

output "webhook_service" {
  description = "The receiver's Cloud Run service (its name alone), in var.region."
  value       = local.function_services["on_project_concluded"]
}

output "webhook_access" {
  description = "How OpusClip's calls reach the receiver; no_invoker_check: make deploy turns the receiver's invoker IAM check off after each apply."
  value       = var.webhook_access
}

output "region" {
  description = "The region of the functions, the triggers and the buckets."
  value       = var.region
}

output "clip_requests_topic" {
  description = "CLIP_REQUESTS_TOPIC for the opus-pipeline CLI's retry command."
  value       = google_pubsub_topic.clip_requests.id
}

output "dead_letter_subscription" {
  description = "Pull subscription holding clip requests that failed every delivery (kept 7 days)."
  value       = google_pubsub_subscription.dead_letter.id
}

output "api_key_secret" {
  description = "Add the OpusClip API key as a version of this secret."
  value       = google_secret_manager_secret.opus_api_key.secret_id
}

output "webhook_signing_secret" {
  description = "The secret the receiver reads OPUS_WEBHOOK_SECRET from (webhook_signing_secret_id); add the organisation's first API key as a version of it. null: none."
  value       = var.webhook_signing_secret_id == "" ? null : var.webhook_signing_secret_id
}

output "webhook_token_secret" {
  description = "The webhook token (make deploy generates it; create-project and the receiver read it)."
  value       = google_secret_manager_secret.webhook_token.secret_id
}

output "ingest_function" {
  description = "The ingest function (Cloud Run service name)."
  value       = google_cloudfunctions2_function.this["ingest"].name
}

output "create_project_function" {
  description = "The create-project function (Cloud Run service name)."
  value       = google_cloudfunctions2_function.this["create_project"].name
}

output "dashboard" {
  description = "Cloud console link to the pipeline's dashboard."
  value       = "https://console.cloud.google.com/monitoring/dashboards/builder/${element(split("/", google_monitoring_dashboard.pipeline.id), 3)}?project=${var.project_id}"
}

output "logs_query" {
  description = "Paste into Logs Explorer to follow the pipeline."
  value       = local.function_logs
}
