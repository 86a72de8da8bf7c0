terraform {
  # 1.7: the removed block in iam.tf.
  required_version = ">= 1.7"

  # Patch releases only: tests/test_provider_schema.py checks every argument against the schema of
  # exactly these minor versions (Makefile PROVIDER_SCHEMA_PACKAGES), so a minor bump is a deliberate
  # change of both. archive >= 2.5 is needed for the glob patterns in archive_file's excludes.
  required_providers {
    google = {
      source  = "hashicorp/google"
      version = "~> 7.46.0"
    }
    # google_project_service_identity (the Eventarc and Pub/Sub service agents) exists only here.
    google-beta = {
      source  = "hashicorp/google-beta"
      version = "~> 7.46.0"
    }
    archive = {
      source  = "hashicorp/archive"
      version = "~> 2.8.0"
    }
    time = {
      source  = "hashicorp/time"
      version = "~> 0.14.0"
    }
  }

  # Configured at init time (infra/deploy.sh, cloudbuild.yaml: -backend-config="bucket=..." -backend-config="prefix=...").
  backend "gcs" {}
}

# Every resource that takes labels carries these, so the pipeline's resources and their costs can
# be found by label (billing export, asset inventory). Values: lowercase letters, digits, - and _.
provider "google" {
  project        = var.project_id
  region         = var.region
  default_labels = local.labels
}

provider "google-beta" {
  project        = var.project_id
  region         = var.region
  default_labels = local.labels
}
