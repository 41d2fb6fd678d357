"""What can be invoked: the embedded app's services and those of registered remote deployments.

Deployments are discovered over HTTP when registered (admin API), kept in the store, and restored at start.
"""

from __future__ import annotations

import logging
from typing import Any

from durably.protocol.ids import new_deployment_id
from durably.sdk.service import App, Handler
from durably.server.engine.interfaces import InvocationTable
from durably.server.engine.invocation import Invocation
from durably.server.remote.attempt import ConnectionPool
from durably.server.remote.deployments import (
    Deployment,
    DiscoveryError,
    RemoteService,
    discover,
    services_from_manifest,
)
from durably.server.store.base import Store
from durably.server.store.ops import DeploymentRecord, DropDeployment, SaveDeployment

log = logging.getLogger("durably.engine")


class Catalog:
    """Every invocable service and handler; registers, removes and restores remote deployments."""

    def __init__(self, app: App, table: InvocationTable, store: Store, pool: ConnectionPool) -> None:
        self.app = app
        self.table = table
        self.store = store
        self.pool = pool
        # Every invocable service: the embedded app's and those of registered deployments.
        self.services: dict[str, Any] = dict(app.services)
        self.deployments: dict[str, Deployment] = {}

    def handler(self, service: str, name: str) -> Handler | None:
        """A handler of the embedded app or of a registered deployment."""
        svc = self.services.get(service)
        return None if svc is None else svc.handlers.get(name)

    def is_exclusive(self, inv: Invocation) -> bool:
        """Whether the invocation takes its key's lock (an object's or workflow's exclusive handler)."""
        handler = self.handler(inv.service, inv.handler)
        if handler is None:
            # Be safe: a keyed invocation of an unknown handler keeps its lock (the key may be "").
            svc = self.services.get(inv.service)
            return svc.kind != "service" if svc is not None else bool(inv.key)
        return handler.service.kind != "service" and not handler.is_shared

    # ---- deployments ----

    def _add(self, dep: Deployment, services: list[RemoteService]) -> None:
        self.deployments[dep.id] = dep
        dep.services = [s.name for s in services]
        for svc in services:
            self.services[svc.name] = svc

    def _drop(self, dep: Deployment) -> None:
        self.deployments.pop(dep.id, None)
        for name in dep.services:
            svc = self.services.get(name)
            if isinstance(svc, RemoteService) and svc.deployment is dep:
                del self.services[name]

    async def register(self, uri: str, use_http_11: bool, force: bool,
                       additional_headers: dict[str, str] | None) -> tuple[Deployment, bool]:
        """Discover a deployment and route its services to it; returns (deployment, created). The caller
        awaits the commit. Raises DiscoveryError (see Engine.register_deployment)."""
        headers = dict(additional_headers or {})
        existing = next((d for d in self.deployments.values() if d.uri == uri), None)
        if existing is not None and not force:
            return existing, False
        manifest, mode, version = await discover(uri, use_http_11, headers, self.pool.signer)
        dep = Deployment(id=existing.id if existing else new_deployment_id(), uri=uri, use_http_11=use_http_11,
                         additional_headers=headers, protocol_mode=mode, protocol_version=version,
                         manifest=manifest, created_at=self.table.now_ms())
        services = services_from_manifest(manifest, dep)
        for svc in services:
            if svc.name in self.app.services:
                raise DiscoveryError(f"service '{svc.name}' belongs to the embedded app; rename one of them", 409)
        if existing is not None:
            self._drop(existing)
        self._add(dep, services)
        self.table.write(SaveDeployment(DeploymentRecord(
            id=dep.id, uri=dep.uri, use_http_11=dep.use_http_11, headers=headers, protocol_mode=mode,
            protocol_version=version, manifest=manifest, created_at=dep.created_at)))
        return dep, existing is None

    def remove(self, dep_id: str) -> bool:
        """Forget a deployment (the caller awaits the commit). False if there is no such deployment."""
        dep = self.deployments.get(dep_id)
        if dep is None:
            return False
        self._drop(dep)
        self.table.write(DropDeployment(dep_id))
        return True

    def restore(self) -> None:
        """Route the services of every deployment kept in the store again (at start)."""
        for rec in self.store.load_deployments():
            dep = Deployment(id=rec.id, uri=rec.uri, use_http_11=rec.use_http_11, additional_headers=rec.headers,
                             protocol_mode=rec.protocol_mode, protocol_version=rec.protocol_version,
                             manifest=rec.manifest, created_at=rec.created_at)
            try:
                self._add(dep, services_from_manifest(dep.manifest, dep))
            except DiscoveryError as e:
                log.error("deployment %s (%s) cannot be restored: %s", dep.id, dep.uri, e)
