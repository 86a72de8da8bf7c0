"""The OpusClip side of the wire: its REST client, its resumable upload session, its clip files."""
