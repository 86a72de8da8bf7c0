"""Pure rules: values in, values out, no I/O (states, preferences, messages, manifest, policies)."""
