"""Cloud Storage adapters: the one compare-and-swap, the ledger, the admission objects, reads, status."""
