"""Pub/Sub adapter: the one publish every function and the CLI use."""
