"""The stories of a video: ingest, create a project, conclude, sweep, admit, re-drive, fail."""
