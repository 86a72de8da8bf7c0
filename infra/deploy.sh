#!/usr/bin/env bash
# The first deployment, and any later one by hand, in one command (`make deploy`):
#   1. apply the Secret Manager containers (and the APIs they need),
#   2. add the OpusClip API key as a secret version, from OPUS_API_KEY or a hidden prompt, and a
#      random webhook token if that secret has no version yet,
#   3. apply everything else.
# The functions resolve both before an instance starts and refuse to start without them, so they
# must exist before phase 3; they go from this shell to Secret Manager and never into Terraform.
# Needs: gcloud (logged in, and `gcloud auth application-default login`: the provider and the
# state backend use Application Default Credentials), terraform, openssl, infra/terraform.tfvars,
# TF_STATE_BUCKET (an existing bucket).
# Each apply asks for approval; AUTO_APPROVE=1 applies without asking (needed without a terminal).
# Safe to run again after any failure: every phase converges on what already exists.
set -euo pipefail
cd "$(dirname "$0")"

: "${TF_STATE_BUCKET:?set TF_STATE_BUCKET to the bucket that keeps the Terraform state}"
approve=""
if [ "${AUTO_APPROVE:-}" = 1 ]; then
  approve="-auto-approve"
elif [ ! -t 0 ]; then
  echo "no terminal to approve the plans on: run \`AUTO_APPROVE=1 make deploy\` to apply without asking" >&2
  exit 1
fi
command -v openssl >/dev/null || { echo "openssl is needed to generate the webhook token: install it" >&2; exit 1; }
gcloud auth application-default print-access-token >/dev/null 2>&1 || {
  echo "no Application Default Credentials (Terraform's provider and backend use them): run \`gcloud auth application-default login\`" >&2
  exit 1
}
[ -f terraform.tfvars ] || { echo "copy terraform.tfvars.example to infra/terraform.tfvars and edit it" >&2; exit 1; }
project=$(sed -n 's/^[[:space:]]*project_id[[:space:]]*=[[:space:]]*"\(.*\)".*/\1/p' terraform.tfvars)
[ -n "$project" ] || { echo "terraform.tfvars sets no project_id" >&2; exit 1; }

# Terraform enables every other API through these two, so they cannot be among its resources.
gcloud services enable serviceusage.googleapis.com cloudresourcemanager.googleapis.com --project="$project"

terraform init -input=false \
  -backend-config="bucket=${TF_STATE_BUCKET}" \
  -backend-config="prefix=${TF_STATE_PREFIX:-opus-clip-pipeline}"

echo "== phase 1: the secret containers"
terraform apply -input=false $approve \
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
  [ -t 0 ] || { echo "no terminal to ask for the OpusClip API key on: set OPUS_API_KEY" >&2; exit 1; }
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
# A new log-based metric can take minutes before an alert policy may use it (404 "Cannot find
# metric(s)", provider issue #11102); monitoring.tf waits 180 s, and an apply that still fails on
# that alone is tried again here after a wait. Any other failure stops: fix it and run again.
errors=$(mktemp)
trap 'rm -f "$errors"' EXIT
for attempt in 1 2 3 4; do
  if terraform apply -input=false $approve 2> >(tee "$errors" >&2); then
    break
  fi
  wait "$!" 2>/dev/null || true # the tee of the error output has written everything
  if [ "$attempt" = 4 ] || ! grep -q "Cannot find metric" "$errors"; then
    exit 1
  fi
  echo "== the log-based metrics are not usable by alert policies yet; applying again in 2 minutes"
  sleep 120
done

if ! git ls-files --error-unmatch .terraform.lock.hcl >/dev/null 2>&1; then
  echo "commit infra/.terraform.lock.hcl: it records the providers' checksums this deployment used"
fi
