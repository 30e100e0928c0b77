"""The region a stage works in, as one object passed down: settings, region, feature store, keys, user.

Why: every stage (features, each model kind, serving) works in one region at a time under that
region's keys and on that region's Feast project. Passing `(settings, region)` pairs made every
function rebuild what it needed: a training run built the region's FeatureStore (parsing its
yaml, loading its registry) once per feature read, and each function re-derived the key store.
A stage's entry point makes one `RegionContext` and hands it down; what it holds is built once,
when first used, and a function that takes a context cannot mix two regions' stores or keys.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

from feast.permissions.user import User

from atelier.regions import get_region
from atelier.settings import Settings


@dataclass
class RegionContext:
    settings: Settings
    region: str
    user: User | None = None  # who acts, for Feast permissions (None: the settings' user and roles)

    @staticmethod
    def of(settings: Settings, region: str, user: User | None = None) -> RegionContext:
        """The context of `region` (a code or name of the region table; unknown ones are refused)."""
        return RegionContext(settings, get_region(region).code, user)

    @cached_property
    def store(self):
        """The region's Feast FeatureStore, built on first use."""
        from atelier.features.repo import feature_store

        return feature_store(self.settings, self.region)

    @cached_property
    def keys(self):
        """The region's key store (its master key wraps every data key of its files)."""
        from atelier.protect.keys import key_store

        return key_store(self.settings, self.region)

    @property
    def paths(self):
        return self.settings.paths

    def historical_features(self, entity_df, features):
        """Point-in-time features from the region's store, as `user` (see features.repo.historical_features)."""
        from atelier.features.repo import historical_features

        return historical_features(self.settings, self.region, entity_df, features, user=self.user, store=self.store)
