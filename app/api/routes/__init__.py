"""The API's route groups, one module per resource; `dagq.api.app` mounts them."""
