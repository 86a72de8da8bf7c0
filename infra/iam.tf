# One service account per function, per trigger and per push subscription, and for the builds.
# Roles are bound on the bucket, topic, subscription, secret, repository or service they concern;
# the only project-level bindings are roles that exist at project level alone (noted where they are).

resource "google_service_account" "ingest" {
  account_id   = "${local.prefix}-ingest"
  display_name = "opus-clip-pipeline ingest function"

  depends_on = [google_project_service.this]
}

resource "google_service_account" "create_project" {
  account_id   = "${local.prefix}-create-project"
  display_name = "opus-clip-pipeline create-project function"

  depends_on = [google_project_service.this]
}

resource "google_service_account" "webhook" {
  account_id   = "${local.prefix}-webhook"
  display_name = "opus-clip-pipeline webhook receiver function"

  depends_on = [google_project_service.this]
}

resource "google_service_account" "sweep" {
  account_id   = "${local.prefix}-sweep"
  display_name = "opus-clip-pipeline sweeper function"

  depends_on = [google_project_service.this]
}

resource "google_service_account" "trigger" {
  account_id   = "${local.prefix}-ingest-trigger"
  display_name = "opus-clip-pipeline Eventarc trigger of the ingest function"

  depends_on = [google_project_service.this]
}

resource "google_service_account" "sweep_trigger" {
  account_id   = "${local.prefix}-sweep-trigger"
  display_name = "opus-clip-pipeline Eventarc trigger of the sweeper function"

  depends_on = [google_project_service.this]
}

resource "google_service_account" "push" {
  account_id   = "${local.prefix}-clip-push"
  display_name = "opus-clip-pipeline Pub/Sub push identity for create-project"

  depends_on = [google_project_service.this]
}

resource "google_service_account" "build" {
  account_id   = "${local.prefix}-build"
  display_name = "opus-clip-pipeline Cloud Build of the functions"

  depends_on = [google_project_service.this]
}

# -- every function: exactly what its code calls --------------------------------------------
# Traced from each entry point (functions/main.py) through its use case; local.functions says per
# function: reads_videos (ingest streams the bytes), keeps_sessions (ingest keeps the upload session
# under sessions/), lists_state (the sweeper lists the open/ markers), admits (publishes a waiting
# video's clip request when it frees a slot), concludes (clips, clip lists, results). Every other
# right is refused, and tests/test_infra.py holds the same table as the specification.

# The storage rights, each a custom role defined on the project and bound on one bucket:
# video_status: write a video's opus-* status metadata (objects.patch), no read of its bytes, no
#   create or delete; video_reader: ingest also reads the bytes it streams (and the live object,
#   when its generation is gone); state_writer: state records, the admission table, the request
#   window and the open/ markers, read, created and replaced by generation match (replacing an
#   object needs delete as well), no listing; state_sweeper: the same, and the sweeper lists the
#   open/ markers;
#   clip_writer: clips and clip lists, written, replaced when a crashed conclusion is taken over,
#   and read back once written for their size and checksums.
locals {
  storage_roles = {
    video_status  = { id = "videoStatus", title = "update videos' metadata", permissions = ["storage.objects.update"] }
    video_reader  = { id = "videoReader", title = "read videos and update their metadata", permissions = ["storage.objects.get", "storage.objects.update"] }
    state_writer  = { id = "stateWriter", title = "read and write state objects", permissions = ["storage.objects.get", "storage.objects.create", "storage.objects.delete"] }
    state_sweeper = { id = "stateSweeper", title = "read, write and list state objects", permissions = ["storage.objects.get", "storage.objects.create", "storage.objects.delete", "storage.objects.list"] }
    clip_writer   = { id = "clipWriter", title = "write clips and clip lists", permissions = ["storage.objects.get", "storage.objects.create", "storage.objects.delete"] }
  }
}

resource "google_project_iam_custom_role" "storage" {
  for_each = local.storage_roles

  role_id     = "${replace(local.prefix, "-", "_")}_${each.value.id}"
  title       = "opus-clip-pipeline: ${each.value.title}"
  permissions = each.value.permissions

  depends_on = [google_project_service.this]
}

# A deleted custom role keeps its id for 7 days: the role deployments before this one created is
# moved, not recreated.
moved {
  from = google_project_iam_custom_role.video_status
  to   = google_project_iam_custom_role.storage["video_status"]
}

resource "google_storage_bucket_iam_member" "reads_videos" {
  for_each = local.functions

  bucket = google_storage_bucket.this["source"].name
  role   = each.value.reads_videos ? google_project_iam_custom_role.storage["video_reader"].id : google_project_iam_custom_role.storage["video_status"].id
  member = "serviceAccount:${each.value.service_account}"
}

# The state bucket's whole IAM policy, authoritative: a new bucket's policy also lets the project's
# Owners, Editors and Viewers in (the projectOwner/projectEditor/projectViewer legacy bindings), so
# a project Viewer could read the upload session URLs under sessions/ (functions/opus_pipeline/gcs/
# sessions.py), which are credentials. This policy replaces those bindings: only the functions'
# grants below remain, and beyond them only project-level storage rights (Owners, Editors, Storage
# Admins) reach the bucket. Every function but ingest gets its state rights on every other object
# name only (a listing names the bucket, so the condition lets the sweeper list); the bucket is
# uniform, which IAM conditions on object names need. The source and output buckets keep their
# legacy bindings: videos and clips are the project members' own (docs/deploying.md).
#
# One binding per role and condition, as IAM keeps them: "ROLE" (upload sessions too) or
# "ROLE:outside-sessions", each with the accounts of the functions it applies to.
locals {
  state_grants = {
    for key, f in local.functions :
    "${f.lists_state ? "state_sweeper" : "state_writer"}${f.keeps_sessions ? "" : ":outside-sessions"}" => "serviceAccount:${f.service_account}"...
  }
}

data "google_iam_policy" "state" {
  dynamic "binding" {
    for_each = local.state_grants
    content {
      role    = google_project_iam_custom_role.storage[split(":", binding.key)[0]].id
      members = binding.value

      dynamic "condition" {
        for_each = endswith(binding.key, ":outside-sessions") ? [local.sessions_object_prefix] : []
        content {
          title       = "no upload sessions"
          description = "Everything in the state bucket but the upload session URLs under sessions/."
          expression  = "!resource.name.startsWith(\"${condition.value}\")"
        }
      }
    }
  }
}

resource "google_storage_bucket_iam_policy" "state" {
  bucket      = google_storage_bucket.this["state"].name
  policy_data = data.google_iam_policy.state.policy_data
}

# The per-member grants deployments before this one made on the state bucket are in the policy above.
# Destroyed, each would remove its member from the bucket's policy, perhaps after the policy was set,
# and take the function's grant with it: they are forgotten instead, and the policy replaces them.
removed {
  from = google_storage_bucket_iam_member.writes_state

  lifecycle {
    destroy = false
  }
}

resource "google_secret_manager_secret_iam_member" "reads_key" {
  for_each = local.functions

  secret_id = google_secret_manager_secret.opus_api_key.id
  role      = "roles/secretmanager.secretAccessor"
  member    = "serviceAccount:${each.value.service_account}"
}

# -- the webhook token: create-project puts it in the URL it registers, the receiver checks it --

resource "google_secret_manager_secret_iam_member" "reads_webhook_token" {
  for_each = { for key, f in local.functions : key => f if f.webhook != null }

  secret_id = google_secret_manager_secret.webhook_token.id
  role      = "roles/secretmanager.secretAccessor"
  member    = "serviceAccount:${each.value.service_account}"
}

# -- the webhook signing key (optional): the receiver verifies OpusClip's signatures with it ----

# The operator's own secret (webhook_signing_secret_id), not one of secrets.tf: readable by the
# receiver alone, and nothing is granted when the variable is empty.
resource "google_secret_manager_secret_iam_member" "reads_webhook_signing_key" {
  for_each = { for key, f in local.functions : key => f if f.webhook == "receives" && var.webhook_signing_secret_id != "" }

  secret_id = "projects/${var.project_id}/secrets/${var.webhook_signing_secret_id}"
  role      = "roles/secretmanager.secretAccessor"
  member    = "serviceAccount:${each.value.service_account}"
}

# -- the concluding functions (the webhook receiver and the sweeper) --------------------------

resource "google_storage_bucket_iam_member" "writes_output" {
  for_each = { for key, f in local.functions : key => f if f.concludes }

  bucket = google_storage_bucket.this["output"].name
  role   = google_project_iam_custom_role.storage["clip_writer"].id
  member = "serviceAccount:${each.value.service_account}"
}

# Freeing a project slot admits the oldest waiting video by publishing its clip request again:
# create-project (a creation that fails) and the sweeper. The public receiver does not: it frees
# its slot and ticks the sweeper, which admits (functions/opus_pipeline/usecases/admit.py).
resource "google_pubsub_topic_iam_member" "admits_waiting" {
  for_each = { for key, f in local.functions : key => f if f.admits }

  topic  = google_pubsub_topic.clip_requests.id
  role   = "roles/pubsub.publisher"
  member = "serviceAccount:${each.value.service_account}"
}

resource "google_pubsub_topic_iam_member" "receiver_ticks_sweeper" {
  for_each = { for key, f in local.functions : key => f if f.webhook == "receives" }

  topic  = google_pubsub_topic.sweep_ticks.id
  role   = "roles/pubsub.publisher"
  member = "serviceAccount:${each.value.service_account}"
}

# The sweeper admits a video that waited for credits by asking ingest to upload it.
resource "google_pubsub_topic_iam_member" "sweep_admits_uploads" {
  topic  = google_pubsub_topic.ingest_requests.id
  role   = "roles/pubsub.publisher"
  member = google_service_account.sweep.member
}

resource "google_pubsub_topic_iam_member" "publishes_results" {
  for_each = { for key, f in local.functions : key => f if f.concludes }

  topic  = google_pubsub_topic.clip_results.id
  role   = "roles/pubsub.publisher"
  member = "serviceAccount:${each.value.service_account}"
}

# The one public binding, with webhook_access = "all_users" only (by default the receiver's invoker
# IAM check is off instead, which Domain restricted sharing allows: variables.tf): OpusClip calls the
# receiver from the internet without a Google identity. What admits a call is the secret token in
# the URL (functions/opus_pipeline/domain/webhook.py). checkov's public-invoker checks (CKV_GCP_102,
# CKV_GCP_107) cover only the v1 Cloud Run and Cloud Functions IAM resources, so nothing is skipped
# here; tests/test_infra.py allows this binding and no other.
resource "google_cloud_run_v2_service_iam_member" "anyone_invokes_webhook" {
  count = var.webhook_access == "all_users" ? 1 : 0

  project  = var.project_id
  location = var.region
  name     = google_cloudfunctions2_function.this["on_project_concluded"].service_config[0].service
  role     = "roles/run.invoker"
  member   = "allUsers"
}

# -- the ingest function -------------------------------------------------------------------

resource "google_pubsub_topic_iam_member" "ingest_publishes" {
  topic  = google_pubsub_topic.clip_requests.id
  role   = "roles/pubsub.publisher"
  member = google_service_account.ingest.member
}

# -- the Eventarc triggers -----------------------------------------------------------------

# Cloud Storage publishes its events through Pub/Sub (Eventarc's transport). Project level:
# Eventarc creates and owns that topic.
resource "google_project_iam_member" "gcs_agent_publisher" {
  project = var.project_id
  role    = "roles/pubsub.publisher"
  member  = data.google_storage_project_service_account.gcs.member

  depends_on = [google_project_service.this]
}

# The Eventarc agent creates the trigger's topic and subscription; an agent created through
# google_project_service_identity is not always granted its role (terraform-docs-samples #486).
# Service agent roles are project-level only.
resource "google_project_iam_member" "eventarc_agent" {
  # checkov:skip=CKV_GCP_49: the member is Google's Eventarc service agent and this is its own documented role
  project = var.project_id
  role    = "roles/eventarc.serviceAgent"
  member  = local.eventarc_agent
}

# roles/eventarc.eventReceiver can only be granted on a project.
resource "google_project_iam_member" "trigger_event_receiver" {
  project = var.project_id
  role    = "roles/eventarc.eventReceiver"
  member  = google_service_account.trigger.member
}

# The trigger's push subscription authenticates as the trigger's account: on projects whose
# Pub/Sub agent predates April 2021 that agent lacks the token-minting role it has on newer ones
# (Eventarc, "Roles and permissions for Cloud Run functions").
resource "google_service_account_iam_member" "pubsub_agent_mints_trigger_tokens" {
  service_account_id = google_service_account.trigger.name
  role               = "roles/iam.serviceAccountTokenCreator"
  member             = local.pubsub_agent
}

# The sweeper's trigger delivers Pub/Sub messages directly: its account needs no
# roles/eventarc.eventReceiver (Eventarc, "Roles and permissions for Cloud Run functions targets"),
# only the token minting below and run.invoker on the sweeper.
resource "google_service_account_iam_member" "pubsub_agent_mints_sweep_trigger_tokens" {
  service_account_id = google_service_account.sweep_trigger.name
  role               = "roles/iam.serviceAccountTokenCreator"
  member             = local.pubsub_agent
}

# IAM changes take minutes to reach every service: the first trigger creation fails while the
# Cloud Storage agent cannot publish yet (provider issue #25294) or the
# Eventarc agent's role has not arrived ("it may take a few minutes before all necessary permissions
# are propagated to the Service Agent", Eventarc's own error). Google's modules wait 120 s to 180 s
# here: terraform-google-modules/terraform-google-bigquery (data_warehouse, PR #193: 180 s after the
# Cloud Storage agent's publisher grant, "to let Eventarc sync up") and GoogleCloudPlatform's
# packaged solutions (wait_for_eventarc_service_agent_permissions, 120 s). The longest of them;
# infra/deploy.sh applies again after these same errors should 180 s still not be enough.
resource "time_sleep" "event_grants_propagate" {
  create_duration = "180s"

  depends_on = [
    google_project_iam_member.gcs_agent_publisher,
    google_project_iam_member.eventarc_agent,
    google_project_iam_member.trigger_event_receiver,
    google_service_account_iam_member.pubsub_agent_mints_trigger_tokens,
    google_service_account_iam_member.pubsub_agent_mints_sweep_trigger_tokens,
  ]
}

resource "google_cloud_run_v2_service_iam_member" "trigger_invokes_ingest" {
  project  = var.project_id
  location = var.region
  name     = google_cloudfunctions2_function.this["ingest"].service_config[0].service
  role     = "roles/run.invoker"
  member   = google_service_account.trigger.member
}

resource "google_cloud_run_v2_service_iam_member" "sweep_trigger_invokes_sweep" {
  project  = var.project_id
  location = var.region
  name     = google_cloudfunctions2_function.this["sweep_projects"].service_config[0].service
  role     = "roles/run.invoker"
  member   = google_service_account.sweep_trigger.member
}

# -- the push subscription -----------------------------------------------------------------

resource "google_cloud_run_v2_service_iam_member" "push_invokes_create" {
  project  = var.project_id
  location = var.region
  name     = google_cloudfunctions2_function.this["create_project"].service_config[0].service
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

# Build logs: project-level, as the Cloud Functions docs list for a custom build service account.
resource "google_project_iam_member" "build_logs" {
  project = var.project_id
  role    = "roles/logging.logWriter"
  member  = google_service_account.build.member
}

# The build reads the source from the copy Cloud Functions makes in its own bucket, not from ours
# (provider issue #20571: "Access to bucket gcf-v2-sources-... denied"). That bucket belongs to
# Cloud Functions, so the grant is a project-level one limited to it by a condition.
resource "google_project_iam_member" "build_reads_gcf_sources" {
  project = var.project_id
  role    = "roles/storage.objectViewer"
  member  = google_service_account.build.member

  condition {
    title       = "gcf-v2-sources bucket only"
    description = "The bucket Cloud Functions copies each deployment's source into."
    expression  = "resource.name.startsWith(\"projects/_/buckets/${local.gcf_sources_bucket}\")"
  }
}

resource "google_storage_bucket_iam_member" "build_reads_source" {
  bucket = google_storage_bucket.this["function_source"].name
  role   = "roles/storage.objectViewer"
  member = google_service_account.build.member
}

# A plan refreshes the archive object, which takes storage.objects.get; the plan account gets it here
# on the archive's bucket alone, not from a project role that would reach videos and clips too.
resource "google_storage_bucket_iam_member" "plan_reads_source" {
  for_each = toset(var.plan_members)

  bucket = google_storage_bucket.this["function_source"].name
  role   = "roles/storage.objectViewer"
  member = each.value
}

# Images go to the pipeline's own repository (build_config.docker_repository), so the push
# right is scoped to it instead of the project-wide writer the default gcf-artifacts needs.
resource "google_artifact_registry_repository_iam_member" "build_pushes_images" {
  location   = google_artifact_registry_repository.functions.location
  repository = google_artifact_registry_repository.functions.name
  role       = "roles/artifactregistry.writer"
  member     = google_service_account.build.member
}

# As the magic-modules example cloudfunctions2_basic_builder: the builder's grants must have
# propagated before the first build pulls the source.
resource "time_sleep" "build_grants_propagate" {
  create_duration = "60s"

  depends_on = [
    google_project_iam_member.build_logs,
    google_project_iam_member.build_reads_gcf_sources,
    google_storage_bucket_iam_member.build_reads_source,
    google_artifact_registry_repository_iam_member.build_pushes_images,
  ]
}
