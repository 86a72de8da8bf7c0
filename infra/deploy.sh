#!/usr/bin/env bash
# The first deployment, and any later one by hand, in one command (`make deploy`):
#   1. apply the Secret Manager containers (and the APIs they need),
#   2. add the OpusClip API key as a secret version, from OPUS_API_KEY or a hidden prompt (not when
#      the latest version already holds that key), and a random webhook token if that secret has
#      no version yet,
#   3. apply everything else, then turn the webhook receiver's invoker IAM check off
#      (webhook_access = no_invoker_check, the default: docs/deploying.md).
# The functions resolve both secrets before an instance starts and refuse to start without them, so
# they must exist before phase 3; they go from this shell to Secret Manager and never into Terraform.
# Needs: gcloud (logged in, and `gcloud auth application-default login`: the provider and the
# state backend use Application Default Credentials), terraform, openssl, infra/terraform.tfvars,
# TF_STATE_BUCKET (a bucket; CREATE_STATE_BUCKET=1 creates it when it does not exist).
# Each apply asks for approval; AUTO_APPROVE=1 applies without asking (needed without a terminal).
# Safe to run again after any failure: every phase converges on what already exists.
# Written for bash 3.2 as well (macOS): no associative arrays, mapfile, ${var,,} or $! after a
# process substitution; ${1+"$@"} is the form of "$@" that older shells accept empty under set -u.
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
for tool in terraform gcloud openssl; do
  command -v "$tool" >/dev/null || { echo "$tool is needed on PATH: install it (docs/deploying.md, Prerequisites)" >&2; exit 1; }
done
gcloud auth application-default print-access-token >/dev/null 2>&1 || {
  echo "no Application Default Credentials (Terraform's provider and backend use them): run \`gcloud auth application-default login\`" >&2
  exit 1
}
[ -f terraform.tfvars ] || { echo "copy terraform.tfvars.example to infra/terraform.tfvars and edit it" >&2; exit 1; }
setting() { sed -n "s/^[[:space:]]*$1[[:space:]]*=[[:space:]]*\"\(.*\)\".*/\1/p" terraform.tfvars; }
project=$(setting project_id)
[ -n "$project" ] || { echo "terraform.tfvars sets no project_id" >&2; exit 1; }
region=$(setting region)
region="${region:-us-central1}"

# Terraform enables every other API through the first two, so they cannot be among its resources;
# the state backend needs Cloud Storage before Terraform runs.
gcloud services enable serviceusage.googleapis.com cloudresourcemanager.googleapis.com storage.googleapis.com --project="$project"

if ! gcloud storage buckets describe "gs://$TF_STATE_BUCKET" --format='value(name)' >/dev/null 2>&1; then
  if [ "${CREATE_STATE_BUCKET:-}" != 1 ]; then
    echo "the state bucket gs://$TF_STATE_BUCKET does not exist (or you may not read it): run again with CREATE_STATE_BUCKET=1 to create it in $project, $region" >&2
    exit 1
  fi
  # Private, uniform, and versioned so an overwritten state can be recovered (Terraform, "gcs" backend).
  gcloud storage buckets create "gs://$TF_STATE_BUCKET" --project="$project" --location="$region" \
    --uniform-bucket-level-access --public-access-prevention
  gcloud storage buckets update "gs://$TF_STATE_BUCKET" --versioning
fi

terraform init -input=false \
  -backend-config="bucket=${TF_STATE_BUCKET}" \
  -backend-config="prefix=${TF_STATE_PREFIX:-opus-clip-pipeline}"

# Errors Google documents as eventual consistency on a fresh project, and only these, are applied
# again after a wait; any other failure stops: fix it and run again.
#   "Cannot find metric": a new log-based metric is not usable by an alert policy for minutes
#     (provider issue #11102; monitoring.tf waits 180 s first).
#   "If you recently started to use Eventarc": Eventarc's answer while its service agent's role
#     propagates ("it may take a few minutes", terraform-docs-samples #203).
#   "GCS service account requires the Pub/Sub Publisher": Eventarc's answer while the Cloud
#     Storage agent's grant propagates (provider issue #25294; iam.tf waits 180 s first).
#   "If you enabled this API recently": Service Usage's SERVICE_DISABLED answer for an API enabled
#     moments before ("wait a few minutes for the action to propagate to our systems and retry").
consistency_errors="Cannot find metric|If you recently started to use Eventarc|GCS service account requires the Pub/Sub Publisher|If you enabled this API recently"
errors=$(mktemp)
trap 'rm -f "$errors"' EXIT

# terraform apply ARGS..., tried up to four times, two minutes apart, while it fails on one of the
# errors above alone. Its error output is shown as it comes and kept to be searched: the pipe
# swaps stdout and stderr through fd 3, and pipefail gives terraform's status, not tee's.
apply() {
  local attempt status
  for attempt in 1 2 3 4; do
    status=0
    { terraform apply -input=false $approve ${1+"$@"} 2>&1 1>&3 3>&- | tee "$errors" >&2; } 3>&1 || status=$?
    [ "$status" = 0 ] && return 0
    if [ "$attempt" = 4 ] || ! grep -Eq "$consistency_errors" "$errors"; then
      return "$status"
    fi
    echo "== Google Cloud has not caught up with the last changes yet (above); applying again in 2 minutes"
    sleep 120
  done
}

echo "== phase 1: the secret containers"
apply -target=google_secret_manager_secret.opus_api_key -target=google_secret_manager_secret.webhook_token
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
# The key is compared in this shell with the latest version's payload (never printed): the same key
# again adds no version. Without secretmanager.versions.access the comparison cannot be made, and a
# version is added.
if [ -n "$key" ] && has_version "$secret" &&
  [ "$(gcloud secrets versions access latest --secret="$secret" --project="$project" 2>/dev/null || true)" = "$key" ]; then
  echo "$secret already holds this key; no new version"
elif [ -n "$key" ]; then
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
apply

# Cloud Run's recommended way to a public service under Domain restricted sharing, which the Cloud
# Functions API cannot set (variables.tf, webhook_access). Done after every apply: Cloud Functions
# owns the service, and the check in functions.tf warns when it is on.
if [ "$(terraform output -raw webhook_access)" = no_invoker_check ]; then
  echo "== OpusClip's webhooks: the receiver's invoker IAM check off"
  gcloud run services update "$(terraform output -raw webhook_service)" --region="$(terraform output -raw region)" \
    --project="$project" --no-invoker-iam-check --quiet
fi

if ! git ls-files --error-unmatch .terraform.lock.hcl >/dev/null 2>&1; then
  echo "commit infra/.terraform.lock.hcl: it records the providers' checksums this deployment used"
fi
