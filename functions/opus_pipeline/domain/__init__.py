"""Pure domain logic: no transport, no cloud clients, no environment."""
