"""The features stage: the feature pipeline, Feast plumbing (offline store, batch engine, online reader) per region."""
