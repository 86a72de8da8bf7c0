locals {
  services = [
    "artifactregistry.googleapis.com",
    "cloudbuild.googleapis.com",
    "cloudfunctions.googleapis.com",
    "cloudresourcemanager.googleapis.com", # data.google_project reads the project number through it
    "cloudscheduler.googleapis.com",
    "eventarc.googleapis.com",
    "iam.googleapis.com",
    "logging.googleapis.com",
    "monitoring.googleapis.com",
    "pubsub.googleapis.com",
    "run.googleapis.com",
    "secretmanager.googleapis.com",
    "storage.googleapis.com",
  ]
}

resource "google_project_service" "this" {
  for_each = toset(local.services)

  project            = var.project_id
  service            = each.value
  disable_on_destroy = false
}

# Service agents are created lazily: on a fresh project the Pub/Sub and Eventarc agents may not
# exist yet when their bindings are made, and Eventarc's first trigger then fails (provider issue
# #25294, terraform-docs-samples #486). Creating them explicitly takes the beta provider.
resource "google_project_service_identity" "agents" {
  provider = google-beta
  for_each = toset(["pubsub.googleapis.com", "eventarc.googleapis.com"])

  project = var.project_id
  service = each.value

  depends_on = [google_project_service.this]
}
