"""Pure domain logic: what the pipeline decides or renders, with no I/O and no cloud libraries."""
