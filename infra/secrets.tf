# The secret containers only. Values never enter Terraform code, variables or state: infra/deploy.sh
# applies these first, adds the API key and a random webhook token as versions with
# `gcloud secrets versions add --data-file=-`, then applies the functions, which resolve them before
# they start. The optional key OpusClip signs webhooks with is a secret of the operator's own, named
# by webhook_signing_secret_id (variables.tf), and not created here.

resource "google_secret_manager_secret" "opus_api_key" {
  secret_id = "${local.prefix}-opus-api-key"

  replication {
    auto {}
  }

  depends_on = [google_project_service.this]
}

# The secret in the webhook URL create-project registers, which the public receiver checks.
resource "google_secret_manager_secret" "webhook_token" {
  secret_id = "${local.prefix}-opus-webhook-token"

  replication {
    auto {}
  }

  depends_on = [google_project_service.this]
}
