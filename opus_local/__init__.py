"""Dev-only tools: the OpusClip stand-in, emulator launchers and the local stack. Never deployed."""
