"""A person's review: the annotator's session, the suggestion queue, imported corrections, and the simulated annotator."""
