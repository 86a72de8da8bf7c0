"""opus-clip-pipeline: stream videos from a GCS bucket into OpusClip and create clip projects."""
