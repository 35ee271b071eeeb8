"""The OpenAPI description of /v1/tenants/{name}/costs (dagq.api.routes.costs), put into
the document by dagq.api.openapi."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel

from dagq.api import schemas as s
from dagq.api.openapi_parts import V1, answer, body, errors, param, ref
from dagq.api.schemas_cost import PutTenantCostsBody, TenantCosts

INPUT_MODELS: list[type[BaseModel]] = [PutTenantCostsBody]
OUTPUT_MODELS: list[type[BaseModel]] = [TenantCosts]


def cost_paths() -> dict[str, Any]:
    name = param("name", "path", {"type": "string", "minLength": 1, "maxLength": 200,
                                   "pattern": s.TENANT_PATTERN}, "the tenant")
    return {"/v1/tenants/{name}/costs": {
        "get": {
            "summary": "A tenant's price table, daily budget and spend today; admin keys",
            "security": V1, "parameters": [name],
            "responses": {"200": answer(ref(TenantCosts), "The tenant's costs"),
                          **errors(401, 403, 422, 503)},
        },
        "put": {
            "summary": "Set a tenant's price table and/or daily budget (what is left out "
                       "is kept; daily_cost_usd null removes it); admin keys",
            "security": V1, "parameters": [name], "requestBody": body(PutTenantCostsBody),
            "responses": {"200": answer(ref(TenantCosts), "Stored"),
                          **errors(400, 401, 403, 413, 422, 503)},
        },
    }}
