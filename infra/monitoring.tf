# Log-based metrics read the functions' structured logs (jsonPayload.event, .bytes, .reason);
# the dashboard and the alerts are built on them and on the platform's own metrics.

locals {
  function_names = [for f in local.functions : f.name]
  # Logging query language: a parenthesised OR of values.
  function_logs = "resource.type=\"cloud_run_revision\" AND resource.labels.service_name=(${join(" OR ", [for n in local.function_names : "\"${n}\""])})"
  # Monitoring filter syntax has no OR of values; one_of() is its equivalent.
  function_series = "resource.type=\"cloud_run_revision\" AND resource.label.service_name=one_of(${join(",", [for n in local.function_names : "\"${n}\""])})"
  user_metric     = "logging.googleapis.com/user"
  # Eventarc names the trigger's subscription eventarc-REGION-TRIGGER-sub-NNN after the trigger's id.
  ingest_trigger_id   = element(split("/", google_cloudfunctions2_function.this["ingest"].event_trigger[0].trigger), 5)
  ingest_subscription = "resource.type=\"pubsub_subscription\" AND resource.label.subscription_id=starts_with(\"eventarc-${var.region}-${local.ingest_trigger_id}-sub-\")"
}

resource "google_logging_metric" "videos_uploaded" {
  name        = "${local.prefix}_videos_uploaded"
  description = "Videos whose bytes all reached OpusClip."
  filter      = "${local.function_logs} AND jsonPayload.event=\"video_uploaded\""

  metric_descriptor {
    metric_kind = "DELTA"
    value_type  = "INT64"
    unit        = "1"
  }
}

resource "google_logging_metric" "bytes_streamed" {
  name            = "${local.prefix}_bytes_streamed"
  description     = "Sizes of the videos streamed into OpusClip."
  filter          = "${local.function_logs} AND jsonPayload.event=\"video_uploaded\""
  value_extractor = "EXTRACT(jsonPayload.bytes)"

  metric_descriptor {
    metric_kind = "DELTA"
    value_type  = "DISTRIBUTION"
    unit        = "By"
  }

  bucket_options {
    exponential_buckets {
      num_finite_buckets = 40
      growth_factor      = 2
      scale              = 1024
    }
  }
}

resource "google_logging_metric" "projects_created" {
  name        = "${local.prefix}_projects_created"
  description = "OpusClip clip projects created."
  filter      = "${local.function_logs} AND jsonPayload.event=\"project_created\""

  metric_descriptor {
    metric_kind = "DELTA"
    value_type  = "INT64"
    unit        = "1"
  }
}

resource "google_logging_metric" "video_failures" {
  name        = "${local.prefix}_video_failures"
  description = "Videos that failed for good, by reason (bad-metadata, quota, monthly-cap, api-key-refused, ...)."
  filter      = "${local.function_logs} AND jsonPayload.event=(\"video_failed\" OR \"poison_message\")"

  label_extractors = {
    reason = "EXTRACT(jsonPayload.reason)"
  }

  metric_descriptor {
    metric_kind = "DELTA"
    value_type  = "INT64"
    unit        = "1"

    labels {
      key         = "reason"
      value_type  = "STRING"
      description = "Why the video failed."
    }
  }
}

resource "google_logging_metric" "clips_ready" {
  name        = "${local.prefix}_clips_ready"
  description = "Projects concluded with their clips listed (and copied) in the output bucket."
  filter      = "${local.function_logs} AND jsonPayload.event=\"clips_ready\""

  metric_descriptor {
    metric_kind = "DELTA"
    value_type  = "INT64"
    unit        = "1"
  }
}

# The pipeline's end-to-end time as a user sees it: from the video's upload to its clips being ready.
resource "google_logging_metric" "upload_to_clips_ready" {
  name            = "${local.prefix}_upload_to_clips_ready"
  description     = "Seconds from a video's upload to its clips being ready."
  filter          = "${local.function_logs} AND jsonPayload.event=\"clips_ready\""
  value_extractor = "EXTRACT(jsonPayload.seconds_since_upload)"

  metric_descriptor {
    metric_kind = "DELTA"
    value_type  = "DISTRIBUTION"
    unit        = "s"
  }

  # 1 minute to about 11 days: OpusClip takes minutes to hours, a lost webhook adds up to a sweep.
  bucket_options {
    exponential_buckets {
      num_finite_buckets = 14
      growth_factor      = 2
      scale              = 60
    }
  }
}

resource "google_logging_metric" "clip_bytes_copied" {
  name            = "${local.prefix}_clip_bytes_copied"
  description     = "Sizes of the clip files copied into the output bucket."
  filter          = "${local.function_logs} AND jsonPayload.event=\"clip_copied\""
  value_extractor = "EXTRACT(jsonPayload.bytes)"

  metric_descriptor {
    metric_kind = "DELTA"
    value_type  = "DISTRIBUTION"
    unit        = "By"
  }

  bucket_options {
    exponential_buckets {
      num_finite_buckets = 40
      growth_factor      = 2
      scale              = 1024
    }
  }
}

# Bursts: how many project slots are taken and how many videos wait for one, as each sweep sees
# them (every sweep_schedule), and how often videos had to wait and were admitted. The dashboard
# charts the two counts as the mean of each period's distribution, which is exact (one sweep per
# period: its own count); a percentile would be interpolated inside a bucket (4 would read 4.99).
resource "google_logging_metric" "slots_in_use" {
  name            = "${local.prefix}_slots_in_use"
  description     = "Project slots in use (projects created and not concluded), as each sweep sees them."
  filter          = "${local.function_logs} AND jsonPayload.event=\"sweep\""
  value_extractor = "EXTRACT(jsonPayload.slots_in_use)"

  metric_descriptor {
    metric_kind = "DELTA"
    value_type  = "DISTRIBUTION"
    unit        = "1"
  }

  bucket_options {
    linear_buckets {
      num_finite_buckets = 51
      width              = 1
      offset             = 0
    }
  }
}

resource "google_logging_metric" "videos_waiting" {
  name            = "${local.prefix}_videos_waiting"
  description     = "Videos waiting for a project slot, as each sweep sees them."
  filter          = "${local.function_logs} AND jsonPayload.event=\"sweep\""
  value_extractor = "EXTRACT(jsonPayload.waiting)"

  metric_descriptor {
    metric_kind = "DELTA"
    value_type  = "DISTRIBUTION"
    unit        = "1"
  }

  bucket_options {
    exponential_buckets {
      num_finite_buckets = 12
      growth_factor      = 2
      scale              = 1
    }
  }
}

resource "google_logging_metric" "admissions" {
  name        = "${local.prefix}_admissions"
  description = "Clip requests that found no free project slot (waiting) and videos admitted when one freed."
  filter      = "${local.function_logs} AND (jsonPayload.event=\"video_waiting\" OR jsonPayload.event=\"video_admitted\")"

  metric_descriptor {
    metric_kind = "DELTA"
    value_type  = "INT64"
    unit        = "1"
    labels {
      key        = "event"
      value_type = "STRING"
    }
  }

  label_extractors = {
    event = "EXTRACT(jsonPayload.event)"
  }
}

# Clips posted or scheduled to social accounts (usecases/publish.py logs one social_post per post
# OpusClip took), by platform and by outcome (published now, or scheduled).
resource "google_logging_metric" "social_posts" {
  name        = "${local.prefix}_social_posts"
  description = "Clips posted or scheduled to connected social accounts, by platform and outcome."
  filter      = "${local.function_logs} AND jsonPayload.event=\"social_post\""

  metric_descriptor {
    metric_kind = "DELTA"
    value_type  = "INT64"
    unit        = "1"
    labels {
      key        = "platform"
      value_type = "STRING"
    }
    labels {
      key        = "outcome"
      value_type = "STRING"
    }
  }

  label_extractors = {
    platform = "EXTRACT(jsonPayload.platform)"
    outcome  = "EXTRACT(jsonPayload.outcome)"
  }
}

# Credits, OpusClip's monthly cap: what each sweep saw of the month (OpusClip's own numbers), what
# the videos probed before upload are estimated to cost, and the sweeps that found them running low
# (a WARNING "credits" line, on which the credits_low alert fires).
resource "google_logging_metric" "credits_remaining" {
  name            = "${local.prefix}_credits_remaining"
  description     = "OpusClip's remaining credits this month, as each sweep sees them."
  filter          = "${local.function_logs} AND jsonPayload.event=\"credits\""
  value_extractor = "EXTRACT(jsonPayload.remaining)"

  metric_descriptor {
    metric_kind = "DELTA"
    value_type  = "DISTRIBUTION"
    unit        = "1"
  }

  bucket_options {
    exponential_buckets {
      num_finite_buckets = 20
      growth_factor      = 2
      scale              = 1
    }
  }
}

resource "google_logging_metric" "credits_estimated" {
  name            = "${local.prefix}_credits_estimated"
  description     = "The credits each video probed before upload is estimated to cost."
  filter          = "${local.function_logs} AND jsonPayload.event=\"video_probed\""
  value_extractor = "EXTRACT(jsonPayload.credits)"

  metric_descriptor {
    metric_kind = "DELTA"
    value_type  = "DISTRIBUTION"
    unit        = "1"
  }

  bucket_options {
    exponential_buckets {
      num_finite_buckets = 12
      growth_factor      = 2
      scale              = 10
    }
  }
}

resource "google_logging_metric" "credits_low" {
  name        = "${local.prefix}_credits_low"
  description = "Sweeps that found OpusClip's remaining credits below the oldest waiting video's estimate or 10% of the limit."
  filter      = "${local.function_logs} AND severity=WARNING AND jsonPayload.event=\"credits\""

  metric_descriptor {
    metric_kind = "DELTA"
    value_type  = "INT64"
    unit        = "1"
  }
}

# The request budget: a call that got no grant of the shared window within a minute (the delivery
# is retried, the sweep looks again later). Now and then during a burst is the budget working; all
# the time means demand above rate_per_minute: fewer ingest instances, or a longer sweep_schedule.
resource "google_logging_metric" "rate_budget_spent" {
  name        = "${local.prefix}_rate_budget_spent"
  description = "OpusClip calls postponed because the shared request budget was spent."
  filter      = "${local.function_logs} AND severity=WARNING AND jsonPayload.reason=\"rate-budget\""

  metric_descriptor {
    metric_kind = "DELTA"
    value_type  = "INT64"
    unit        = "1"
  }
}

# OpusClip's own 429s, which the budget and the slot table should prevent: one means another tool
# uses the same key. A 429 for the in-flight cap is logged as event rate_limited (the video waits
# again at the head of the queue); one for the rate, as a retry or warning with reason rate-limited.
resource "google_logging_metric" "opus_rate_limited" {
  name        = "${local.prefix}_opus_rate_limited"
  description = "OpusClip answers 429 (its rate limit or its in-flight cap)."
  filter      = "${local.function_logs} AND severity=WARNING AND (jsonPayload.event=\"rate_limited\" OR jsonPayload.reason=\"rate-limited\")"

  metric_descriptor {
    metric_kind = "DELTA"
    value_type  = "INT64"
    unit        = "1"
  }
}

# Also counted in video_failures (reason project-stalled); a metric of its own for its own alert,
# whose remedy differs: the upload is still at OpusClip, a retry only asks for a new project.
resource "google_logging_metric" "projects_stalled" {
  name        = "${local.prefix}_projects_stalled"
  description = "OpusClip projects that ended stalled instead of complete."
  filter      = "${local.function_logs} AND jsonPayload.event=\"video_failed\" AND jsonPayload.reason=\"project-stalled\""

  metric_descriptor {
    metric_kind = "DELTA"
    value_type  = "INT64"
    unit        = "1"
  }
}

# One point per project a create call made or the pipeline adopted, per other project OpusClip's
# list names the same upload with ("duplicate"), and per unanswered call given up on before the
# video was created again ("unconfirmed": it may have made a project OpusClip did not list).
# create_project.py logs each attempt's outcome with the video's labels: two points, two projects.
resource "google_logging_metric" "video_projects" {
  name        = "${local.prefix}_video_projects"
  description = "Clip projects per video: created, or found in OpusClip's project list after an unanswered create call, or possibly made by a call never answered."
  filter      = "${local.function_logs} AND jsonPayload.event=\"create_outcome\" AND jsonPayload.outcome=(\"created\" OR \"adopted\" OR \"duplicate\" OR \"unconfirmed\")"

  label_extractors = {
    object     = "EXTRACT(labels.object)"
    generation = "EXTRACT(labels.generation)"
  }

  metric_descriptor {
    metric_kind = "DELTA"
    value_type  = "INT64"
    unit        = "1"

    labels {
      key         = "object"
      value_type  = "STRING"
      description = "The source object's name."
    }
    labels {
      key         = "generation"
      value_type  = "STRING"
      description = "The source object's generation (one video)."
    }
  }
}

resource "google_monitoring_dashboard" "pipeline" {
  dashboard_json = jsonencode({
    displayName = "opus-clip-pipeline (${local.prefix})"
    mosaicLayout = {
      columns = 12
      tiles = [
        for index, tile in [
          { title = "Videos uploaded to OpusClip", plot = "LINE", filter = "metric.type=\"${local.user_metric}/${google_logging_metric.videos_uploaded.name}\"", aligner = "ALIGN_SUM", reducer = "REDUCE_SUM", group = [] },
          { title = "Sizes of the videos streamed", plot = "HEATMAP", filter = "metric.type=\"${local.user_metric}/${google_logging_metric.bytes_streamed.name}\"", aligner = "ALIGN_DELTA", reducer = "REDUCE_SUM", group = [] },
          { title = "Clip projects created", plot = "LINE", filter = "metric.type=\"${local.user_metric}/${google_logging_metric.projects_created.name}\"", aligner = "ALIGN_SUM", reducer = "REDUCE_SUM", group = [] },
          { title = "Failed videos by reason", plot = "LINE", filter = "metric.type=\"${local.user_metric}/${google_logging_metric.video_failures.name}\"", aligner = "ALIGN_SUM", reducer = "REDUCE_SUM", group = ["metric.label.reason"] },
          { title = "Function errors (5xx) by function", plot = "LINE", filter = "metric.type=\"run.googleapis.com/request_count\" AND ${local.function_series} AND metric.label.response_code_class=\"5xx\"", aligner = "ALIGN_RATE", reducer = "REDUCE_SUM", group = ["resource.label.service_name"] },
          { title = "Function latency p95 by function", plot = "LINE", filter = "metric.type=\"run.googleapis.com/request_latencies\" AND ${local.function_series}", aligner = "ALIGN_PERCENTILE_95", reducer = "REDUCE_MAX", group = ["resource.label.service_name"] },
          { title = "Dead-lettered clip requests waiting", plot = "LINE", filter = "metric.type=\"pubsub.googleapis.com/subscription/num_undelivered_messages\" AND resource.type=\"pubsub_subscription\" AND resource.label.subscription_id=\"${google_pubsub_subscription.dead_letter.name}\"", aligner = "ALIGN_MAX", reducer = "REDUCE_SUM", group = [] },
          { title = "Clip requests waiting for create-project", plot = "LINE", filter = "metric.type=\"pubsub.googleapis.com/subscription/num_undelivered_messages\" AND resource.type=\"pubsub_subscription\" AND resource.label.subscription_id=\"${google_pubsub_subscription.create_project_push.name}\"", aligner = "ALIGN_MAX", reducer = "REDUCE_SUM", group = [] },
          { title = "Age of the oldest upload event not yet ingested", plot = "LINE", filter = "metric.type=\"pubsub.googleapis.com/subscription/oldest_unacked_message_age\" AND ${local.ingest_subscription}", aligner = "ALIGN_MAX", reducer = "REDUCE_MAX", group = [] },
          { title = "Projects with clips ready", plot = "LINE", filter = "metric.type=\"${local.user_metric}/${google_logging_metric.clips_ready.name}\"", aligner = "ALIGN_SUM", reducer = "REDUCE_SUM", group = [] },
          { title = "Time from upload to clips ready", plot = "HEATMAP", filter = "metric.type=\"${local.user_metric}/${google_logging_metric.upload_to_clips_ready.name}\"", aligner = "ALIGN_DELTA", reducer = "REDUCE_SUM", group = [] },
          { title = "Sizes of the clips copied", plot = "HEATMAP", filter = "metric.type=\"${local.user_metric}/${google_logging_metric.clip_bytes_copied.name}\"", aligner = "ALIGN_DELTA", reducer = "REDUCE_SUM", group = [] },
          { title = "Project slots in use, of ${var.max_parallel_projects} (per sweep)", plot = "LINE", filter = "metric.type=\"${local.user_metric}/${google_logging_metric.slots_in_use.name}\"", aligner = "ALIGN_DELTA", reducer = "REDUCE_MEAN", group = [] },
          { title = "Videos waiting for a project slot (per sweep)", plot = "LINE", filter = "metric.type=\"${local.user_metric}/${google_logging_metric.videos_waiting.name}\"", aligner = "ALIGN_DELTA", reducer = "REDUCE_MEAN", group = [] },
          { title = "Videos that waited, and admitted", plot = "LINE", filter = "metric.type=\"${local.user_metric}/${google_logging_metric.admissions.name}\"", aligner = "ALIGN_SUM", reducer = "REDUCE_SUM", group = ["metric.label.event"] },
          { title = "OpusClip calls postponed: request budget spent", plot = "LINE", filter = "metric.type=\"${local.user_metric}/${google_logging_metric.rate_budget_spent.name}\"", aligner = "ALIGN_SUM", reducer = "REDUCE_SUM", group = [] },
          { title = "OpusClip 429 answers (another tool shares the key)", plot = "LINE", filter = "metric.type=\"${local.user_metric}/${google_logging_metric.opus_rate_limited.name}\"", aligner = "ALIGN_SUM", reducer = "REDUCE_SUM", group = [] },
          { title = "OpusClip credits remaining this month (per sweep)", plot = "LINE", filter = "metric.type=\"${local.user_metric}/${google_logging_metric.credits_remaining.name}\"", aligner = "ALIGN_DELTA", reducer = "REDUCE_MEAN", group = [] },
          { title = "Credits estimated per day (videos probed before upload)", plot = "STACKED_BAR", filter = "metric.type=\"${local.user_metric}/${google_logging_metric.credits_estimated.name}\"", aligner = "ALIGN_SUM", reducer = "REDUCE_SUM", group = [], period = "86400s" },
          { title = "Sweeps that found the credits running low", plot = "LINE", filter = "metric.type=\"${local.user_metric}/${google_logging_metric.credits_low.name}\"", aligner = "ALIGN_SUM", reducer = "REDUCE_SUM", group = [] },
          { title = "Stalled projects", plot = "LINE", filter = "metric.type=\"${local.user_metric}/${google_logging_metric.projects_stalled.name}\"", aligner = "ALIGN_SUM", reducer = "REDUCE_SUM", group = [] },
          { title = "Clips posted to social accounts, by platform", plot = "STACKED_BAR", filter = "metric.type=\"${local.user_metric}/${google_logging_metric.social_posts.name}\"", aligner = "ALIGN_SUM", reducer = "REDUCE_SUM", group = ["metric.label.platform"] },
          { title = "Projects per video (the most of any video, per day; 1 is right)", plot = "LINE", filter = "metric.type=\"${local.user_metric}/${google_logging_metric.video_projects.name}\"", aligner = "ALIGN_SUM", reducer = "REDUCE_MAX", group = [], period = "86400s" },
          ] : merge(index % 2 == 0 ? {} : { xPos = 6 }, index < 2 ? {} : { yPos = floor(index / 2) * 4 }, {
            width                                = 6
            height                               = 4
            widget = {
              title = tile.title
              xyChart = {
                dataSets = [{
                  plotType = tile.plot
                  timeSeriesQuery = {
                    timeSeriesFilter = {
                      filter = tile.filter
                      aggregation = merge({
                        alignmentPeriod    = lookup(tile, "period", "300s")
                        perSeriesAligner   = tile.aligner
                        crossSeriesReducer = tile.reducer
                      }, length(tile.group) == 0 ? {} : { groupByFields = tile.group })
                    }
                  }
                }]
              }
            }
        })
      ]
    }
  })
}

resource "google_monitoring_alert_policy" "dead_letter_not_empty" {
  display_name          = "opus-clip-pipeline: clip requests in the dead-letter subscription"
  combiner              = "OR"
  notification_channels = var.notification_channels

  conditions {
    display_name = "dead-letter subscription holds messages"

    condition_threshold {
      filter          = "metric.type=\"pubsub.googleapis.com/subscription/num_undelivered_messages\" AND resource.type=\"pubsub_subscription\" AND resource.label.subscription_id=\"${google_pubsub_subscription.dead_letter.name}\""
      comparison      = "COMPARISON_GT"
      threshold_value = 0
      duration        = "60s"

      aggregations {
        alignment_period   = "60s"
        per_series_aligner = "ALIGN_MAX"
      }
    }
  }

  documentation {
    mime_type = "text/markdown"
    content   = "A clip request failed ${var.dead_letter_max_attempts} deliveries. Pull it from `${google_pubsub_subscription.dead_letter.id}`, read the create-project logs for its uploadId, fix the cause, then `opus-pipeline retry gs://BUCKET/NAME`."
  }
}

resource "google_monitoring_alert_policy" "video_failed" {
  display_name          = "opus-clip-pipeline: a video failed"
  combiner              = "OR"
  notification_channels = var.notification_channels

  conditions {
    display_name = "a video failed for good"

    condition_threshold {
      filter          = "metric.type=\"${local.user_metric}/${google_logging_metric.video_failures.name}\" AND resource.type=\"cloud_run_revision\""
      comparison      = "COMPARISON_GT"
      threshold_value = 0
      duration        = "0s"

      aggregations {
        alignment_period     = "300s"
        per_series_aligner   = "ALIGN_SUM"
        cross_series_reducer = "REDUCE_SUM"
        group_by_fields      = ["metric.label.reason"]
      }
    }
  }

  # Created with the metric, the policy fails intermittently with 404 "Cannot find metric(s) ... could
  # take up to 10 minutes" (provider issue #11102, open); waiting as cloud-foundation-fabric #3739 does.
  depends_on = [time_sleep.log_metrics_registered]

  documentation {
    mime_type = "text/markdown"
    content   = "The object's `opus-error` metadata and the ERROR log line say what to fix; `opus-pipeline status gs://${google_storage_bucket.this["source"].name}` lists failed videos."
  }
}

resource "google_monitoring_alert_policy" "function_errors" {
  display_name          = "opus-clip-pipeline: function error rate"
  combiner              = "OR"
  notification_channels = var.notification_channels

  conditions {
    display_name = "5xx answers above 0.1 per second for 10 minutes"

    condition_threshold {
      filter          = "metric.type=\"run.googleapis.com/request_count\" AND ${local.function_series} AND metric.label.response_code_class=\"5xx\""
      comparison      = "COMPARISON_GT"
      threshold_value = 0.1
      duration        = "600s"

      aggregations {
        alignment_period     = "300s"
        per_series_aligner   = "ALIGN_RATE"
        cross_series_reducer = "REDUCE_SUM"
        group_by_fields      = ["resource.label.service_name"]
      }
    }
  }

  documentation {
    mime_type = "text/markdown"
    content   = "Retries are raising: OpusClip or Cloud Storage is unavailable, or the configuration is wrong. The functions' WARNING lines (jsonPayload.event=\"retry\") say which."
  }
}

resource "time_sleep" "log_metrics_registered" {
  create_duration = "180s"

  # A renamed metric is a new metric: wait for it again.
  triggers = {
    video_failures   = google_logging_metric.video_failures.id
    projects_stalled = google_logging_metric.projects_stalled.id
    video_projects   = google_logging_metric.video_projects.id
  }
}

# Fires on the sweeper's WARNING "credits" line itself (a log-match condition): the remaining credits
# fell below the oldest waiting video's estimate or 10% of the limit (domain/credits.py running_low).
resource "google_monitoring_alert_policy" "credits_low" {
  display_name          = "opus-clip-pipeline: OpusClip credits running low"
  combiner              = "OR"
  notification_channels = var.notification_channels

  conditions {
    display_name = "remaining credits below the oldest waiting video's estimate or 10% of the limit"

    condition_matched_log {
      filter = "${local.function_logs} AND severity=WARNING AND jsonPayload.event=\"credits\""
    }
  }

  # A log-match policy must limit its notifications: every sweep logs the line while it holds.
  alert_strategy {
    notification_rate_limit {
      period = "21600s"
    }
    auto_close = "86400s"
  }

  documentation {
    mime_type = "text/markdown"
    content   = "Videos wait for credits (they are not lost, and none is uploaded meanwhile): `opus-pipeline usage gs://${google_storage_bucket.this["source"].name}` shows OpusClip's month, what is reserved and each waiting video's estimate. They go on by themselves after the month resets (the 1st, UTC); to go on sooner, upgrade the OpusClip plan, or raise monthly_credit_budget if it is what holds them."
  }
}

resource "google_monitoring_alert_policy" "project_stalled" {
  display_name          = "opus-clip-pipeline: an OpusClip project stalled"
  combiner              = "OR"
  notification_channels = var.notification_channels

  conditions {
    display_name = "a project ended stalled"

    condition_threshold {
      filter          = "metric.type=\"${local.user_metric}/${google_logging_metric.projects_stalled.name}\" AND resource.type=\"cloud_run_revision\""
      comparison      = "COMPARISON_GT"
      threshold_value = 0
      duration        = "0s"

      aggregations {
        alignment_period     = "300s"
        per_series_aligner   = "ALIGN_SUM"
        cross_series_reducer = "REDUCE_SUM"
      }
    }
  }

  # As video_failed: the policy needs its metric registered first (provider issue #11102).
  depends_on = [time_sleep.log_metrics_registered]

  documentation {
    mime_type = "text/markdown"
    content   = "OpusClip stopped a project before its clips were ready. The upload is still at OpusClip for a while: `opus-pipeline status gs://${google_storage_bucket.this["source"].name}` lists the video as failed with reason project-stalled, and `opus-pipeline retry gs://${google_storage_bucket.this["source"].name}/NAME` asks for a new project from the same upload."
  }
}

# A gen2 event function's retries stop a day after the event, and the Eventarc trigger has no
# dead-letter topic: an outage longer than that would lose uploads silently. This fires well before.
resource "google_monitoring_alert_policy" "ingest_backlog" {
  display_name          = "opus-clip-pipeline: upload events waiting for ingest"
  combiner              = "OR"
  notification_channels = var.notification_channels

  conditions {
    display_name = "oldest upload event older than ${var.ingest_backlog_alert_hours} h"

    condition_threshold {
      filter          = "metric.type=\"pubsub.googleapis.com/subscription/oldest_unacked_message_age\" AND ${local.ingest_subscription}"
      comparison      = "COMPARISON_GT"
      threshold_value = var.ingest_backlog_alert_hours * 3600
      duration        = "300s"

      aggregations {
        alignment_period   = "300s"
        per_series_aligner = "ALIGN_MAX"
      }
    }
  }

  documentation {
    mime_type = "text/markdown"
    content   = "Ingest has not acknowledged an upload event for ${var.ingest_backlog_alert_hours} h; Eventarc drops it 24 h after the upload. Fix the cause (the ingest function's WARNING and ERROR lines say which), then `opus-pipeline status gs://${google_storage_bucket.this["source"].name}` and `opus-pipeline retry gs://${google_storage_bucket.this["source"].name}/NAME` for each video left `uploading` or `failed`."
  }
}

# Cloud Run logs every request with its URL, and OpusClip's webhook calls carry the receiver's
# token in theirs: those request logs stay out of Cloud Logging. The receiver's own log lines never
# contain the token, and its request counts and latencies still come from Cloud Run's metrics.
resource "google_logging_project_exclusion" "webhook_request_urls" {
  name        = "${local.prefix}-webhook-request-urls"
  description = "Request logs of the webhook receiver: their URLs carry its secret token."
  filter      = "resource.type=\"cloud_run_revision\" AND resource.labels.service_name=\"${local.webhook_service}\" AND log_id(\"run.googleapis.com/requests\")"

  depends_on = [google_project_service.this]
}

resource "google_monitoring_alert_policy" "two_projects_for_a_video" {
  display_name          = "opus-clip-pipeline: a video has two OpusClip projects"
  combiner              = "OR"
  notification_channels = var.notification_channels

  conditions {
    display_name = "more than one project created or adopted for one video within a day"

    condition_threshold {
      filter          = "metric.type=\"${local.user_metric}/${google_logging_metric.video_projects.name}\" AND resource.type=\"cloud_run_revision\""
      comparison      = "COMPARISON_GT"
      threshold_value = 1
      duration        = "0s"

      aggregations {
        alignment_period     = "86400s"
        per_series_aligner   = "ALIGN_SUM"
        cross_series_reducer = "REDUCE_SUM"
        group_by_fields      = ["metric.label.object", "metric.label.generation"]
      }
    }
  }

  depends_on = [time_sleep.log_metrics_registered]

  documentation {
    mime_type = "text/markdown"
    content   = "A video may have a second OpusClip project (credits spent twice): a create call went unanswered and OpusClip's project list showed no project of it within create_grace_seconds, so it was created again (outcome \"unconfirmed\", then \"created\"), or the list names two projects of its upload (outcome \"duplicate\"). The functions' create_outcome lines (jsonPayload.event=\"create_outcome\") for the video name both projects; delete the one not followed in OpusClip's dashboard."
  }
}
