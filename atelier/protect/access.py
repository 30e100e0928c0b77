"""Access control on the platform's own paths, decided by Feast's permissions.

The policy is the `Permission` objects in `feature_repo/` (see feature_repo/permissions.py and
each maison's file), stored in the region's registry. Feast enforces them inside its servers
through a `SecurityManager` that holds the caller's roles; the platform's apply, materialize,
online and offline read paths do the same here, so there is one policy and one decision engine.

Before the first apply the registry holds no permissions; the definitions being applied then
provide them, so the very first apply is already judged by the policy it installs.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Iterator

from feast import FeatureStore
from feast.errors import FeastObjectNotFoundException, FeastPermissionError
from feast.permissions.action import AuthzedAction
from feast.permissions.permission import Permission
from feast.permissions.security_manager import SecurityManager, get_security_manager, no_security_manager, set_security_manager
from feast.permissions.user import User

from atelier.errors import AtelierError


class PermissionDenied(AtelierError):
    pass


class _PlatformSecurityManager(SecurityManager):
    def __init__(self, project: str, registry, bootstrap: list[Permission]):
        super().__init__(project=project, registry=registry)
        self._bootstrap = bootstrap

    @property
    def permissions(self) -> list[Permission]:
        return super().permissions or self._bootstrap


def default_user() -> User:
    from atelier.settings import get_settings

    s = get_settings()
    return User(username=s.user, roles=list(s.roles))


@contextlib.contextmanager
def acting_as(store: FeatureStore, user: User | None, bootstrap: Iterable[Permission] = ()) -> Iterator[SecurityManager]:
    """Install a SecurityManager for `user` on the store's project for the duration of the block."""
    user = user or default_user()
    previous = get_security_manager()
    sm = _PlatformSecurityManager(store.project, store.registry, list(bootstrap))
    sm.set_current_user(user)
    set_security_manager(sm)
    try:
        yield sm
    except FeastPermissionError as e:
        raise PermissionDenied(
            f"{user.username} (roles: {', '.join(user.roles) or 'none'}) may not do this: {e}",
            fix="ask for the role the policy requires (feature_repo/permissions.py)",
        ) from None
    finally:
        if previous is None:
            no_security_manager()
        else:
            set_security_manager(previous)


def authorize_apply(store: FeatureStore, objects: list, user: User | None, deleting: Iterable = ()) -> None:
    bootstrap = [o for o in objects if isinstance(o, Permission)]
    with acting_as(store, user, bootstrap) as sm:
        for obj in objects:
            try:
                existing = _lookup(store, obj)
            except FeastObjectNotFoundException:
                existing = None
            sm.assert_permissions([obj], [AuthzedAction.DESCRIBE, AuthzedAction.UPDATE] if existing is not None else [AuthzedAction.CREATE])
        for obj in deleting:
            sm.assert_permissions([obj], [AuthzedAction.DELETE])


def _lookup(store: FeatureStore, obj):
    getters = {
        "Entity": store.registry.get_entity,
        "FeatureView": store.registry.get_feature_view,
        "FeatureService": store.registry.get_feature_service,
        "Permission": store.registry.get_permission,
    }
    getter = getters.get(type(obj).__name__)
    if getter is None:
        return store.registry.get_data_source(obj.name, store.project) if hasattr(obj, "timestamp_field") else None
    return getter(obj.name, store.project)


def authorize(store: FeatureStore, resources: list, action: AuthzedAction, user: User | None) -> None:
    with acting_as(store, user) as sm:
        sm.assert_permissions(resources, [action])


def authorize_materialize(store: FeatureStore, views: list, user: User | None) -> None:
    authorize(store, views, AuthzedAction.WRITE_ONLINE, user)


def authorize_online_read(store: FeatureStore, resources: list, user: User | None) -> None:
    authorize(store, resources, AuthzedAction.READ_ONLINE, user)


def authorize_offline_read(store: FeatureStore, resources: list, user: User | None) -> None:
    authorize(store, resources, AuthzedAction.READ_OFFLINE, user)
