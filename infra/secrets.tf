# The secret containers only. Values never enter Terraform code, variables or state: add them with
#   printf %s "$OPUS_API_KEY" | gcloud secrets versions add <name> --data-file=-

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
