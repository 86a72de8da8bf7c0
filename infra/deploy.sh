#!/usr/bin/env bash
# The first deployment, and any later one by hand, in one command (`make deploy`):
#   1. apply the Secret Manager containers (and the APIs they need),
#   2. add the OpusClip API key as a secret version, from OPUS_API_KEY or a hidden prompt, and a
#      random webhook token if that secret has no version yet,
#   3. apply everything else.
# The functions resolve both before an instance starts and refuse to start without them, so they
# must exist before phase 3; they go from this shell to Secret Manager and never into Terraform.
# Needs: gcloud (logged in), terraform, infra/terraform.tfvars, TF_STATE_BUCKET (an existing bucket).
set -euo pipefail
cd "$(dirname "$0")"

: "${TF_STATE_BUCKET:?set TF_STATE_BUCKET to the bucket that keeps the Terraform state}"
[ -f terraform.tfvars ] || { echo "copy terraform.tfvars.example to infra/terraform.tfvars and edit it" >&2; exit 1; }
project=$(sed -n 's/^[[:space:]]*project_id[[:space:]]*=[[:space:]]*"\(.*\)".*/\1/p' terraform.tfvars)
[ -n "$project" ] || { echo "terraform.tfvars sets no project_id" >&2; exit 1; }

# Terraform enables every other API through these two, so they cannot be among its resources.
gcloud services enable serviceusage.googleapis.com cloudresourcemanager.googleapis.com --project="$project"

terraform init -input=false \
  -backend-config="bucket=${TF_STATE_BUCKET}" \
  -backend-config="prefix=${TF_STATE_PREFIX:-opus-clip-pipeline}"

echo "== phase 1: the secret containers"
terraform apply -input=false \
  -target=google_secret_manager_secret.opus_api_key \
  -target=google_secret_manager_secret.webhook_token
secret=$(terraform output -raw api_key_secret)
token_secret=$(terraform output -raw webhook_token_secret)

has_version() {
  [ -n "$(gcloud secrets versions list "$1" --project="$project" --filter=state=ENABLED --limit=1 --format='value(name)')" ]
}

echo "== phase 2: the OpusClip API key and the webhook token"
key="${OPUS_API_KEY:-}"
if [ -z "$key" ] && ! has_version "$secret"; then
  read -rs -p "OpusClip API key (not echoed): " key
  echo
  [ -n "$key" ] || { echo "no key given" >&2; exit 1; }
fi
if [ -n "$key" ]; then
  printf %s "$key" | gcloud secrets versions add "$secret" --project="$project" --data-file=-
else
  echo "$secret already has an enabled version; set OPUS_API_KEY to add a new one"
fi
unset key

# Generated once, never shown: only create-project (which puts it in the URL it registers with each
# project) and the receiver (which checks it) read it. A new version would refuse the webhooks of
# projects already running, which the sweeper then concludes instead.
if has_version "$token_secret"; then
  echo "$token_secret already has an enabled version; keeping it"
else
  openssl rand -hex 32 | tr -d '\n' | gcloud secrets versions add "$token_secret" --project="$project" --data-file=-
fi

echo "== phase 3: everything else"
terraform apply -input=false

if ! git ls-files --error-unmatch .terraform.lock.hcl >/dev/null 2>&1; then
  echo "commit infra/.terraform.lock.hcl: it records the providers' checksums this deployment used"
fi
