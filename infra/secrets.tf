# The secret containers only. Values never enter Terraform code, variables or state: infra/deploy.sh
# applies these first, adds the API key as a version with `gcloud secrets versions add --data-file=-`,
# then applies the functions, which resolve the key before they start.

resource "google_secret_manager_secret" "opus_api_key" {
  secret_id = "${local.prefix}-opus-api-key"

  replication {
    auto {}
  }

  depends_on = [google_project_service.this]
}

resource "google_secret_manager_secret" "webhook_token" {
  secret_id = "${local.prefix}-opus-webhook-token"

  replication {
    auto {}
  }

  depends_on = [google_project_service.this]
}
