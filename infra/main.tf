# opus-clip-pipeline: a video dropped into the source bucket streams into OpusClip, and a clip
# project is created for it. Files by concern: apis, storage, pubsub, secrets, functions, iam,
# monitoring.

data "google_project" "this" {
  project_id = var.project_id

  depends_on = [google_project_service.this["cloudresourcemanager.googleapis.com"]]
}

data "google_storage_project_service_account" "gcs" {
  project = var.project_id

  depends_on = [google_project_service.this["storage.googleapis.com"]]
}

locals {
  prefix         = var.name_prefix
  source_bucket  = var.source_bucket_name != "" ? var.source_bucket_name : "${var.project_id}-${var.name_prefix}-videos"
  pubsub_agent   = google_project_service_identity.agents["pubsub.googleapis.com"].member
  eventarc_agent = google_project_service_identity.agents["eventarc.googleapis.com"].member
  ingest_service = "${local.prefix}-ingest"
  create_service = "${local.prefix}-create-project"
  # Cloud Functions copies each deployment's source here, and the build reads it from here.
  gcf_sources_bucket = "gcf-v2-sources-${data.google_project.this.number}-${var.region}"

  # Every variable the code reads (functions/opus_pipeline/config.py ENV_VARS), but the secret key.
  function_environment = {
    OPUS_API_BASE_URL              = var.opus_api_base_url
    OPUS_UPLOAD_URL_HOSTS          = join(",", var.opus_upload_url_hosts)
    CLIP_REQUESTS_TOPIC            = google_pubsub_topic.clip_requests.id
    STATE_BUCKET                   = google_storage_bucket.this["state"].name
    UPLOAD_CHUNK_SIZE              = tostring(var.upload_chunk_size_mib * 1048576)
    MAX_VIDEO_BYTES                = tostring(var.max_video_bytes)
    SOURCE_PREFIX                  = var.source_prefix
    UPLOAD_DEADLINE_SECONDS        = tostring(var.upload_deadline_seconds)
    LEASE_SECONDS                  = tostring(var.lease_seconds)
    STATUS_METADATA                = tostring(var.status_metadata)
    OPUS_NOTIFY_EMAIL              = var.notify_email
    OPUS_WEBHOOK_URL               = var.webhook_url
    OPUS_DEFAULT_GENRE             = var.default_preferences.genre
    OPUS_DEFAULT_TOPIC_KEYWORDS    = var.default_preferences.topic_keywords
    OPUS_DEFAULT_CLIP_DURATIONS    = var.default_preferences.clip_durations
    OPUS_DEFAULT_SOURCE_LANG       = var.default_preferences.source_lang
    OPUS_DEFAULT_BRAND_TEMPLATE_ID = var.default_preferences.brand_template_id
    OPUS_DEFAULT_SKIP_CURATE       = var.default_preferences.skip_curate
  }
}
