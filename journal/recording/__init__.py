"""Recording signed entries: ``recorder`` checks, verifies and appends them to their journal's
log, once; ``rows`` holds the statements it runs and the COPY that writes a batch."""
