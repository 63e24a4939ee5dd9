"""Study layer: fidelity studies (does a cheap estimator rank like a reliable reference?), rank statistics and the
proxy trust a run's dashboard shows; imports model, estimate, runs and search."""
