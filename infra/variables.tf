variable "project_id" {
  type        = string
  description = "The Google Cloud project that hosts the pipeline."

  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{4,28}[a-z0-9]$", var.project_id))
    error_message = "project_id must be a project ID (6-30 lowercase letters, digits or hyphens, starting with a letter), not its name or number."
  }
}

variable "region" {
  type        = string
  description = "Region of the functions, the Eventarc trigger and every bucket (a trigger must share its bucket's region)."
  default     = "us-central1"

  validation {
    condition     = can(regex("^[a-z]+(-[a-z]+)+[0-9]+$", var.region))
    error_message = "region must be one Cloud Functions region such as us-central1 or europe-west1, not a multi-region (EU, US) or a zone."
  }
}

variable "name_prefix" {
  type        = string
  description = "Prefix of every resource name; keep it short (service account ids allow 30 characters)."
  default     = "opus"

  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{1,11}$", var.name_prefix))
    error_message = "name_prefix must be 2-12 lowercase letters, digits or hyphens, starting with a letter."
  }
}

variable "source_bucket_name" {
  type        = string
  description = "Name of the bucket users upload videos to (globally unique). Empty: <project_id>-<name_prefix>-videos."
  default     = ""
}

variable "opus_api_base_url" {
  type        = string
  description = "OpusClip API base URL (OPUS_API_BASE_URL)."
  default     = "https://api.opus.pro"

  validation {
    condition     = can(regex("^https://", var.opus_api_base_url))
    error_message = "opus_api_base_url must be an https URL."
  }
}

variable "opus_upload_url_hosts" {
  type        = list(string)
  description = "Hosts (host or host:port) that upload links and session Locations may point to (OPUS_UPLOAD_URL_HOSTS)."
  default     = ["storage.googleapis.com"]

  validation {
    condition     = length(var.opus_upload_url_hosts) > 0 && alltrue([for h in var.opus_upload_url_hosts : can(regex("^[A-Za-z0-9.-]+(:[0-9]+)?$", h))])
    error_message = "Each entry must be a host name or host:port, without scheme or path."
  }
}

variable "upload_chunk_size_mib" {
  type        = number
  description = "Size of each chunk streamed to OpusClip, in MiB (UPLOAD_CHUNK_SIZE). The ingest function holds two."
  default     = 16

  validation {
    condition     = var.upload_chunk_size_mib >= 1 && var.upload_chunk_size_mib <= 128 && floor(var.upload_chunk_size_mib) == var.upload_chunk_size_mib
    error_message = "upload_chunk_size_mib must be a whole number from 1 to 128 (a multiple of 256 KiB by construction)."
  }
}

variable "max_video_bytes" {
  type        = number
  description = "Largest video accepted, in bytes (MAX_VIDEO_BYTES); OpusClip's upload cap is 30 GB."
  default     = 30000000000
}

variable "max_video_seconds" {
  type        = number
  description = "Longest video accepted, in seconds (MAX_VIDEO_SECONDS), read from its container before upload; OpusClip's cap is 10 hours."
  default     = 36000
}

variable "monthly_credit_budget" {
  type        = number
  description = "OpusClip credits this pipeline may spend per UTC calendar month (OPUS_MONTHLY_CREDIT_BUDGET), a whole number from 1 (config.py refuses anything else at start-up); null: no budget of its own, only OpusClip's monthly cap. Raising it admits waiting videos on the next sweep."
  default     = null

  # null fails the comparison, which try() turns into "no budget": allowed.
  validation {
    condition     = try(var.monthly_credit_budget >= 1 && floor(var.monthly_credit_budget) == var.monthly_credit_budget, var.monthly_credit_budget == null)
    error_message = "monthly_credit_budget must be a whole number of credits, at least 1, or null for no budget of its own."
  }
}

variable "source_prefix" {
  type        = string
  description = "Only objects whose names start with this prefix are ingested (SOURCE_PREFIX). Empty: all."
  default     = ""
}

variable "upload_deadline_seconds" {
  type        = number
  description = "Streaming time one invocation allows itself before recording its offset and letting the retry resume (UPLOAD_DEADLINE_SECONDS)."
  default     = 480

  validation {
    condition     = var.upload_deadline_seconds >= 60 && var.upload_deadline_seconds <= 500
    error_message = "upload_deadline_seconds must leave room below the 540 s function timeout (60-500)."
  }
}

variable "lease_seconds" {
  type        = number
  description = "How long a crashed invocation's claim on a video blocks a retry (LEASE_SECONDS)."
  default     = 90

  validation {
    condition     = var.lease_seconds >= 30 && var.lease_seconds <= 180
    error_message = "lease_seconds must be 30-180: long enough for a chunk, short enough for a quick takeover."
  }
}

variable "status_metadata" {
  type        = bool
  description = "Show each video's status as opus-* custom metadata on its object (STATUS_METADATA)."
  default     = true
}

variable "webhook_require_signature" {
  type        = bool
  description = "Refuse webhook calls without a valid X-Opus-Signature (OPUS_WEBHOOK_REQUIRE_SIGNATURE). OpusClip signs with the organisation's first API key: turn it on only when OPUS_API_KEY is that key, or webhook_signing_secret_id names a secret holding it."
  default     = false
}

# The variable names a secret, it never holds one: the key's value goes into Secret Manager with
# gcloud secrets versions add (docs/deploying.md), as the API key's does.
variable "webhook_signing_secret_id" {
  type        = string
  description = "Id of an existing Secret Manager secret in project_id whose latest version is the key OpusClip signs webhooks with (the organisation's first API key), when OPUS_API_KEY is another key: the webhook receiver alone gets it as OPUS_WEBHOOK_SECRET, and may read that secret. Empty: none (signatures are verified with OPUS_API_KEY)."
  default     = ""
  nullable    = false

  validation {
    condition     = var.webhook_signing_secret_id == "" || (can(regex("^[A-Za-z0-9_-]{1,255}$", var.webhook_signing_secret_id)) && !startswith(var.webhook_signing_secret_id, "sk-"))
    error_message = "webhook_signing_secret_id must be a Secret Manager secret id (1-255 letters, digits, - or _, not a projects/... path) in project_id, never the key itself, or empty for none."
  }
}

variable "default_preferences" {
  type = object({
    genre               = optional(string, "")
    topic_keywords      = optional(string, "")
    clip_durations      = optional(string, "")
    source_lang         = optional(string, "")
    brand_template_id   = optional(string, "")
    skip_curate         = optional(string, "")
    model               = optional(string, "")
    prompt              = optional(string, "")
    aspect_ratio        = optional(string, "")
    remove_filler_words = optional(string, "")
    auto_hook           = optional(string, "")
    title               = optional(string, "")
    captions            = optional(string, "")
    copy_top            = optional(string, "")
    min_score           = optional(string, "")
  })
  description = "Deploy-wide OpusClip preferences (OPUS_DEFAULT_*), in the same syntax as the opus-* object metadata; per-video metadata overrides them."
  default     = {}
}

variable "opus_org_id" {
  type        = string
  description = "The OpusClip organisation sent as x-opus-org-id on every API call (OPUS_ORG_ID); needed when the API key belongs to several organisations. Empty: none."
  default     = ""
}

variable "publishing" {
  type = object({
    approval = optional(string, "required")
    publish  = optional(string, "")
    count    = optional(string, "")
    at       = optional(string, "")
    every    = optional(string, "")
    privacy  = optional(string, "")
  })
  description = "Publishing clips to social accounts (docs/publishing.md): OPUS_PUBLISH_APPROVAL (required or auto) and the deploy-wide OPUS_DEFAULT_PUBLISH* choices, in the opus-publish* metadata syntax."
  default     = {}

  validation {
    condition     = contains(["required", "auto"], var.publishing.approval)
    error_message = "publishing.approval must be required or auto."
  }
}

variable "notify_email" {
  type        = string
  description = "Email OpusClip notifies when a project concludes or fails (OPUS_NOTIFY_EMAIL). Empty: none."
  default     = ""
}

variable "copy_clips" {
  type        = bool
  description = "Copy each finished project's clip files into the output bucket (COPY_CLIPS); false: the clip list only links to OpusClip's files."
  default     = true
}

variable "opus_clip_url_hosts" {
  type        = list(string)
  description = "Hosts (host or host:port) that clip file URLs may point to before they are copied (OPUS_CLIP_URL_HOSTS)."
  default     = ["cdn.opus.pro", "ext.cdn.opus.pro", "storage.googleapis.com"]

  validation {
    condition     = length(var.opus_clip_url_hosts) > 0 && alltrue([for h in var.opus_clip_url_hosts : can(regex("^[A-Za-z0-9.-]+(:[0-9]+)?$", h))])
    error_message = "Each entry must be a host name or host:port, without scheme or path."
  }
}

variable "sweep_schedule" {
  type        = string
  description = "Cron schedule (UTC) of the sweeper that looks at running projects whose webhook got lost."
  default     = "*/5 * * * *"

  # Cloud Scheduler's unix-cron: five fields of digits, names, *, /, , and -.
  validation {
    condition     = can(regex("^[0-9A-Za-z*/,-]+( +[0-9A-Za-z*/,-]+){4}$", var.sweep_schedule))
    error_message = "sweep_schedule must be a five-field unix-cron schedule, such as \"*/5 * * * *\"."
  }
}

variable "sweep_max_calls" {
  type        = number
  description = "Most projects one sweep asks OpusClip about (SWEEP_MAX_CALLS); OpusClip allows 30 requests per minute per key."
  default     = 10

  validation {
    condition     = var.sweep_max_calls >= 1 && var.sweep_max_calls <= 20 && floor(var.sweep_max_calls) == var.sweep_max_calls
    error_message = "sweep_max_calls must be a whole number from 1 to 20, leaving create-project most of OpusClip's 30 requests a minute."
  }
}

variable "clip_render_wait_seconds" {
  type        = number
  description = "How long after OpusClip completes a project its clips may still be rendering (CLIP_RENDER_WAIT_SECONDS); a clip still rendering then is left uncopied, with its OpusClip link in the manifest."
  default     = 3600

  validation {
    condition     = var.clip_render_wait_seconds >= 1 && floor(var.clip_render_wait_seconds) == var.clip_render_wait_seconds
    error_message = "clip_render_wait_seconds must be a whole number of seconds from 1."
  }
}

variable "ingest_max_instances" {
  type        = number
  description = "Most videos streamed at once (one per instance, two chunks of memory each). Each upload spends one OpusClip request (its upload link) of rate_per_minute; projects start no sooner for more of them, since max_parallel_projects paces a burst."
  default     = 10

  validation {
    condition     = var.ingest_max_instances >= 1 && var.ingest_max_instances <= 20 && floor(var.ingest_max_instances) == var.ingest_max_instances
    error_message = "ingest_max_instances must be a whole number from 1 to 20: a burst's upload links must leave project creation and the sweeper a third of OpusClip's 30 requests a minute."
  }
}

variable "ingest_memory" {
  type        = string
  description = "Memory of the ingest function: two chunks plus the Python runtime."
  default     = "512Mi"
}

variable "create_max_instances" {
  type        = number
  description = "Most concurrent create-project calls. OpusClip's limits are kept by the shared slot table and request budget (max_parallel_projects, rate_per_minute), not by this; a few instances let a burst's admissions overlap."
  default     = 2

  validation {
    condition     = var.create_max_instances >= 1 && var.create_max_instances <= 10
    error_message = "create_max_instances must be 1-10."
  }
}

variable "max_parallel_projects" {
  type        = number
  description = "Projects in flight at once across all instances (OPUS_MAX_PARALLEL_PROJECTS): OpusClip allows 4 on Pro and Max, 50 on Business."
  default     = 4

  validation {
    condition     = var.max_parallel_projects >= 1 && floor(var.max_parallel_projects) == var.max_parallel_projects
    error_message = "max_parallel_projects must be a whole number, at least 1 (config.py reads it as one)."
  }
}

variable "rate_per_minute" {
  type        = number
  description = "OpusClip calls per minute of all functions together (OPUS_RATE_PER_MINUTE); OpusClip allows 30 per API key. Lower it if other tools share the key."
  default     = 30

  validation {
    condition     = var.rate_per_minute >= 1 && floor(var.rate_per_minute) == var.rate_per_minute
    error_message = "rate_per_minute must be a whole number, at least 1 (config.py reads it as one)."
  }
}

variable "state_retention_days" {
  type        = number
  description = "Days a video's state record is kept (it guards against duplicate events; later it only documents)."
  default     = 90
}

variable "dead_letter_max_attempts" {
  type        = number
  description = "Deliveries of a clip request before it moves to the dead-letter topic."
  default     = 10

  validation {
    condition     = var.dead_letter_max_attempts >= 5 && var.dead_letter_max_attempts <= 100
    error_message = "Pub/Sub allows 5-100 delivery attempts."
  }
}

# Google's "secure by default" baseline enforces Domain restricted sharing
# (iam.allowedPolicyMemberDomains) on every organisation created since 2024-05-03, and it refuses
# an allUsers binding. Cloud Run's invoker IAM check off is what Cloud Run recommends for a public
# service under that policy (Cloud Run, "Allowing public (unauthenticated) access"); the Cloud
# Functions API cannot set it (provider issue #23360), so make deploy sets it on the receiver's
# Cloud Run service after each apply, and the check in functions.tf confirms it.
variable "webhook_access" {
  type        = string
  description = "How OpusClip's calls, which carry no Google identity, reach the webhook receiver: no_invoker_check (Cloud Run's invoker IAM check off, set by make deploy; works under Domain restricted sharing), all_users (an allUsers run.invoker binding; refused under Domain restricted sharing), or sweeper_only (nothing: calls are refused and the sweeper concludes every project). See docs/deploying.md."
  default     = "no_invoker_check"

  validation {
    condition     = contains(["no_invoker_check", "all_users", "sweeper_only"], var.webhook_access)
    error_message = "webhook_access must be no_invoker_check, all_users or sweeper_only."
  }
}

variable "notification_channels" {
  type        = list(string)
  description = "Monitoring notification channel ids (projects/P/notificationChannels/N) the alerts go to."
  default     = []

  validation {
    condition     = alltrue([for c in var.notification_channels : can(regex("^projects/[a-z0-9-]+/notificationChannels/[0-9]+$", c))])
    error_message = "Each notification channel must be a full id, projects/PROJECT/notificationChannels/NUMBER (gcloud beta monitoring channels list)."
  }
}

variable "plan_members" {
  type        = list(string)
  description = "Identities that run terraform plan without deploy rights (the pull-request plan account, as serviceAccount:EMAIL): they may read the function source archive, which a plan refreshes, and no other object. See docs/deploying.md."
  default     = []

  validation {
    condition     = alltrue([for m in var.plan_members : can(regex("^(serviceAccount|user|group):[^@ ]+@[^@ ]+$", m))])
    error_message = "Each plan member must be serviceAccount:EMAIL, user:EMAIL or group:EMAIL."
  }
}

variable "force_destroy_buckets" {
  type        = bool
  description = "Let terraform destroy buckets that still hold objects (test projects only)."
  default     = false
}

variable "ingest_backlog_alert_hours" {
  type        = number
  description = "Alert when an upload event has waited this long for ingest; Eventarc gives up on it after 24 h."
  default     = 4

  validation {
    condition     = var.ingest_backlog_alert_hours >= 1 && var.ingest_backlog_alert_hours <= 12
    error_message = "ingest_backlog_alert_hours must be 1-12: early enough to act before the 24 h limit."
  }
}

variable "create_grace_seconds" {
  type        = number
  description = "How long a project an unanswered create call may have made is looked for in OpusClip's project list before the video is created again (OPUS_CREATE_GRACE_SECONDS); at most 3 create calls per upload."
  default     = 300

  validation {
    condition     = var.create_grace_seconds >= 1 && floor(var.create_grace_seconds) == var.create_grace_seconds
    error_message = "create_grace_seconds must be a whole number, at least 1."
  }
}

variable "stalled_grace_seconds" {
  type        = number
  description = "How long a STALLED project is watched for OpusClip to move it on before the video fails as project-stalled (STALLED_GRACE_SECONDS)."
  default     = 21600

  validation {
    condition     = var.stalled_grace_seconds >= 1 && floor(var.stalled_grace_seconds) == var.stalled_grace_seconds
    error_message = "stalled_grace_seconds must be a whole number, at least 1."
  }
}
