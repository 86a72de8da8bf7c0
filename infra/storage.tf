# Uploads land in the source bucket; state records, clip lists and the function source are private.

locals {
  # expire_days: objects older than this are deleted (null: kept); noncurrent_days: overwritten
  # or deleted generations are kept this long (versioning guards against accidents).
  buckets = {
    source = { name = local.source_bucket, expire_days = null, noncurrent_days = 7, force_destroy = var.force_destroy_buckets }
    state  = { name = "${var.project_id}-${local.prefix}-state", expire_days = var.state_retention_days, noncurrent_days = 3, force_destroy = var.force_destroy_buckets }
    output = { name = "${var.project_id}-${local.prefix}-output", expire_days = null, noncurrent_days = 30, force_destroy = var.force_destroy_buckets }
    # No age rule here: it would delete the live archive and Terraform would upload it again.
    # A code change gives the archive a new name and Terraform deletes the old one, which
    # versioning keeps noncurrent for noncurrent_days.
    function_source = { name = "${var.project_id}-${local.prefix}-function-source", expire_days = null, noncurrent_days = 7, force_destroy = true }
  }
}

resource "google_storage_bucket" "this" {
  # checkov:skip=CKV_GCP_62: access logs belong in the organisation's audit-log sink, not in a bucket per pipeline
  for_each = local.buckets

  name                        = each.value.name
  location                    = var.region
  uniform_bucket_level_access = true
  public_access_prevention    = "enforced"
  force_destroy               = each.value.force_destroy

  versioning {
    enabled = true
  }

  # Objects older than expire_days; and in the state bucket, upload session URLs an ended upload
  # left behind (ingest deletes its own) once the session could not be used any more (a week).
  dynamic "lifecycle_rule" {
    for_each = concat(
      each.value.expire_days == null ? [] : [{ age = each.value.expire_days, prefixes = [] }],
      each.key == "state" ? [{ age = 7, prefixes = ["sessions/"] }] : [],
    )
    content {
      condition {
        age            = lifecycle_rule.value.age
        matches_prefix = lifecycle_rule.value.prefixes
      }
      action {
        type = "Delete"
      }
    }
  }

  lifecycle_rule {
    condition {
      days_since_noncurrent_time = each.value.noncurrent_days
      with_state                 = "ARCHIVED"
    }
    action {
      type = "Delete"
    }
  }

  depends_on = [google_project_service.this]
}

data "archive_file" "functions" {
  type        = "zip"
  source_dir  = "${path.module}/../functions"
  output_path = "${path.module}/.build/functions.zip"
  excludes    = ["**/__pycache__/**", "**/*.pyc"]
  # Every file 0644 whatever the checkout's umask: the archive's hash names the object, and a mode
  # that differed between machines would redeploy all four functions with unchanged code.
  output_file_mode = "0644"
}

# The object name carries the archive's hash, so any code change redeploys the four functions.
resource "google_storage_bucket_object" "functions" {
  name   = "functions-${data.archive_file.functions.output_md5}.zip"
  bucket = google_storage_bucket.this["function_source"].name
  source = data.archive_file.functions.output_path
}
