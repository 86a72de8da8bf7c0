# One service account per function, per trigger and per push subscription, and for the builds.
# Roles are bound on the bucket, topic, subscription, secret or service they concern; the only
# project-level bindings are roles that exist at project level alone (noted where they are).

resource "google_service_account" "ingest" {
  account_id   = "${local.prefix}-ingest"
  display_name = "opus-clip-pipeline ingest function"
}

resource "google_service_account" "create_project" {
  account_id   = "${local.prefix}-create-project"
  display_name = "opus-clip-pipeline create-project function"
}

resource "google_service_account" "trigger" {
  account_id   = "${local.prefix}-ingest-trigger"
  display_name = "opus-clip-pipeline Eventarc trigger of the ingest function"
}

resource "google_service_account" "push" {
  account_id   = "${local.prefix}-clip-push"
  display_name = "opus-clip-pipeline Pub/Sub push identity for create-project"
}

resource "google_service_account" "build" {
  account_id   = "${local.prefix}-build"
  display_name = "opus-clip-pipeline Cloud Build of the functions"
}

# -- the ingest function -------------------------------------------------------------------

# Reads videos and writes their opus-* status metadata (objectUser: get, list, update).
resource "google_storage_bucket_iam_member" "ingest_source" {
  bucket = google_storage_bucket.this["source"].name
  role   = "roles/storage.objectUser"
  member = google_service_account.ingest.member
}

# Creates and replaces state records (replacing an object needs delete as well).
resource "google_storage_bucket_iam_member" "ingest_state" {
  bucket = google_storage_bucket.this["state"].name
  role   = "roles/storage.objectUser"
  member = google_service_account.ingest.member
}

resource "google_pubsub_topic_iam_member" "ingest_publishes" {
  topic  = google_pubsub_topic.clip_requests.id
  role   = "roles/pubsub.publisher"
  member = google_service_account.ingest.member
}

resource "google_secret_manager_secret_iam_member" "ingest_reads_key" {
  secret_id = google_secret_manager_secret.opus_api_key.id
  role      = "roles/secretmanager.secretAccessor"
  member    = google_service_account.ingest.member
}

# -- the create-project function -----------------------------------------------------------

resource "google_storage_bucket_iam_member" "create_state" {
  bucket = google_storage_bucket.this["state"].name
  role   = "roles/storage.objectUser"
  member = google_service_account.create_project.member
}

resource "google_storage_bucket_iam_member" "create_source" {
  bucket = google_storage_bucket.this["source"].name
  role   = "roles/storage.objectUser"
  member = google_service_account.create_project.member
}

resource "google_secret_manager_secret_iam_member" "create_reads_key" {
  secret_id = google_secret_manager_secret.opus_api_key.id
  role      = "roles/secretmanager.secretAccessor"
  member    = google_service_account.create_project.member
}

# -- the Eventarc trigger ------------------------------------------------------------------

# Cloud Storage publishes its events through Pub/Sub (Eventarc's transport). Project level:
# Eventarc creates and owns that topic.
resource "google_project_iam_member" "gcs_agent_publisher" {
  project = var.project_id
  role    = "roles/pubsub.publisher"
  member  = data.google_storage_project_service_account.gcs.member
}

# roles/eventarc.eventReceiver can only be granted on a project.
resource "google_project_iam_member" "trigger_event_receiver" {
  project = var.project_id
  role    = "roles/eventarc.eventReceiver"
  member  = google_service_account.trigger.member
}

resource "google_cloud_run_v2_service_iam_member" "trigger_invokes_ingest" {
  project  = var.project_id
  location = var.region
  name     = google_cloudfunctions2_function.ingest.service_config[0].service
  role     = "roles/run.invoker"
  member   = google_service_account.trigger.member
}

# -- the push subscription -----------------------------------------------------------------

resource "google_cloud_run_v2_service_iam_member" "push_invokes_create" {
  project  = var.project_id
  location = var.region
  name     = google_cloudfunctions2_function.create_project.service_config[0].service
  role     = "roles/run.invoker"
  member   = google_service_account.push.member
}

# Pub/Sub's service agent mints the OIDC tokens of the push identity...
resource "google_service_account_iam_member" "pubsub_agent_mints_push_tokens" {
  service_account_id = google_service_account.push.name
  role               = "roles/iam.serviceAccountTokenCreator"
  member             = local.pubsub_agent
}

# ...and, for dead-lettering, publishes to the dead-letter topic and acknowledges the source.
resource "google_pubsub_topic_iam_member" "pubsub_agent_dead_letters" {
  topic  = google_pubsub_topic.dead_letter.id
  role   = "roles/pubsub.publisher"
  member = local.pubsub_agent
}

resource "google_pubsub_subscription_iam_member" "pubsub_agent_acks_source" {
  subscription = google_pubsub_subscription.create_project_push.id
  role         = "roles/pubsub.subscriber"
  member       = local.pubsub_agent
}

# -- builds --------------------------------------------------------------------------------

# Build logs and the gcf-artifacts repository Cloud Functions creates: project-level roles, as
# the Cloud Functions module documents for a custom build service account.
resource "google_project_iam_member" "build" {
  for_each = toset(["roles/logging.logWriter", "roles/artifactregistry.writer"])

  project = var.project_id
  role    = each.value
  member  = google_service_account.build.member
}

resource "google_storage_bucket_iam_member" "build_reads_source" {
  bucket = google_storage_bucket.this["function_source"].name
  role   = "roles/storage.objectViewer"
  member = google_service_account.build.member
}
