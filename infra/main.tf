# opus-clip-pipeline: a video dropped into the source bucket streams into OpusClip, a clip
# project is created for it, and when the project ends (OpusClip's webhook, or the sweeper that
# catches lost webhooks) its clips are copied to the output bucket and a result is published.
# Files by concern: apis, storage, pubsub, secrets, functions, iam, monitoring.

data "google_project" "this" {
  project_id = var.project_id

  depends_on = [google_project_service.this["cloudresourcemanager.googleapis.com"]]
}

data "google_storage_project_service_account" "gcs" {
  project = var.project_id

  depends_on = [google_project_service.this["storage.googleapis.com"]]
}

locals {
  labels = {
    app        = "opus-clip-pipeline"
    deployment = var.name_prefix
    managed-by = "terraform"
  }
  prefix          = var.name_prefix
  source_bucket   = var.source_bucket_name != "" ? var.source_bucket_name : "${var.project_id}-${var.name_prefix}-videos"
  pubsub_agent    = google_project_service_identity.agents["pubsub.googleapis.com"].member
  eventarc_agent  = google_project_service_identity.agents["eventarc.googleapis.com"].member
  ingest_service  = "${local.prefix}-ingest"
  create_service  = "${local.prefix}-create-project"
  webhook_service = "${local.prefix}-webhook"
  sweep_service   = "${local.prefix}-sweep"
  # The receiver's own URL, which create-project registers with each project. It cannot be read from
  # the function: all functions are one for_each resource, so the receiver's url in their environment
  # would be a cycle. Cloud Run's deterministic URL is known before the service exists
  # (https://SERVICE-PROJECT_NUMBER.REGION.run.app, "Invoke with an HTTPS request"); it needs the
  # service name and project number to fit one 63-character DNS label, which 20 + 1 + 12 do. The
  # check in functions.tf confirms after each apply that the receiver serves it.
  webhook_url = "https://${local.webhook_service}-${data.google_project.this.number}.${var.region}.run.app"
  # Cloud Functions copies each deployment's source here, and the build reads it from here.
  gcf_sources_bucket = "gcf-v2-sources-${data.google_project.this.number}-${var.region}"
  # Upload session URLs in the state bucket, as an IAM condition names objects (gcs/sessions.py).
  sessions_object_prefix = "projects/_/buckets/${google_storage_bucket.this["state"].name}/objects/sessions/"

  # Every variable the code reads (functions/opus_pipeline/config.py ENV_VARS) but the secrets
  # (functions.tf: OPUS_API_KEY, OPUS_WEBHOOK_TOKEN, and OPUS_WEBHOOK_SECRET for the receiver when
  # webhook_signing_secret_id is set) and OPUS_WEBHOOK_URL, which only the function that registers
  # the webhook gets (functions.tf).
  function_environment = {
    OPUS_API_BASE_URL              = var.opus_api_base_url
    OPUS_UPLOAD_URL_HOSTS          = join(",", var.opus_upload_url_hosts)
    CLIP_REQUESTS_TOPIC            = google_pubsub_topic.clip_requests.id
    INGEST_REQUESTS_TOPIC          = google_pubsub_topic.ingest_requests.id
    STATE_BUCKET                   = google_storage_bucket.this["state"].name
    SOURCE_BUCKET                  = google_storage_bucket.this["source"].name
    UPLOAD_CHUNK_SIZE              = tostring(var.upload_chunk_size_mib * 1048576)
    MAX_VIDEO_BYTES                = tostring(var.max_video_bytes)
    MAX_VIDEO_SECONDS              = tostring(var.max_video_seconds)
    OPUS_MONTHLY_CREDIT_BUDGET     = var.monthly_credit_budget == null ? "" : tostring(var.monthly_credit_budget)
    SOURCE_PREFIX                  = var.source_prefix
    UPLOAD_DEADLINE_SECONDS        = tostring(var.upload_deadline_seconds)
    LEASE_SECONDS                  = tostring(var.lease_seconds)
    STATUS_METADATA                = tostring(var.status_metadata)
    OPUS_NOTIFY_EMAIL              = var.notify_email
    OPUS_WEBHOOK_REQUIRE_SIGNATURE = tostring(var.webhook_require_signature)
    OUTPUT_BUCKET                  = google_storage_bucket.this["output"].name
    CLIP_RESULTS_TOPIC             = google_pubsub_topic.clip_results.id
    COPY_CLIPS                     = tostring(var.copy_clips)
    OPUS_CLIP_URL_HOSTS            = join(",", var.opus_clip_url_hosts)
    SWEEP_MAX_CALLS                = tostring(var.sweep_max_calls)
    OPUS_MAX_PARALLEL_PROJECTS     = tostring(var.max_parallel_projects)
    OPUS_RATE_PER_MINUTE           = tostring(var.rate_per_minute)
    SWEEP_TICKS_TOPIC              = google_pubsub_topic.sweep_ticks.id
    CLIP_RENDER_WAIT_SECONDS       = tostring(var.clip_render_wait_seconds)
    OPUS_CREATE_GRACE_SECONDS      = tostring(var.create_grace_seconds)
    STALLED_GRACE_SECONDS          = tostring(var.stalled_grace_seconds)
    OPUS_DEFAULT_GENRE             = var.default_preferences.genre
    OPUS_DEFAULT_TOPIC_KEYWORDS    = var.default_preferences.topic_keywords
    OPUS_DEFAULT_CLIP_DURATIONS    = var.default_preferences.clip_durations
    OPUS_DEFAULT_SOURCE_LANG       = var.default_preferences.source_lang
    OPUS_DEFAULT_BRAND_TEMPLATE_ID = var.default_preferences.brand_template_id
    OPUS_DEFAULT_SKIP_CURATE       = var.default_preferences.skip_curate

    # The options OpusClip's own client sends (issue 19).
    OPUS_DEFAULT_MODEL               = var.default_preferences.model
    OPUS_DEFAULT_PROMPT              = var.default_preferences.prompt
    OPUS_DEFAULT_ASPECT_RATIO        = var.default_preferences.aspect_ratio
    OPUS_DEFAULT_REMOVE_FILLER_WORDS = var.default_preferences.remove_filler_words
    OPUS_DEFAULT_AUTO_HOOK           = var.default_preferences.auto_hook
    OPUS_DEFAULT_TITLE               = var.default_preferences.title

    # Captions, the best clips only, the organisation (issue 26).
    OPUS_DEFAULT_CAPTIONS  = var.default_preferences.captions
    OPUS_DEFAULT_COPY_TOP  = var.default_preferences.copy_top
    OPUS_DEFAULT_MIN_SCORE = var.default_preferences.min_score
    OPUS_ORG_ID            = var.opus_org_id
    # Publishing clips to social accounts (issue 27, docs/publishing.md).
    OPUS_PUBLISH_APPROVAL        = var.publishing.approval
    OPUS_DEFAULT_PUBLISH         = var.publishing.publish
    OPUS_DEFAULT_PUBLISH_COUNT   = var.publishing.count
    OPUS_DEFAULT_PUBLISH_AT      = var.publishing.at
    OPUS_DEFAULT_PUBLISH_EVERY   = var.publishing.every
    OPUS_DEFAULT_PUBLISH_PRIVACY = var.publishing.privacy
  }
}
