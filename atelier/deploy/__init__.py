"""Deploying the regional bentos onto each region's GKE cluster."""
