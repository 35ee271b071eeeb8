-- dagq:compatible-with 21
-- Revoking API keys (issue 34): `dagq keys revoke` and DELETE /v1/keys/{id} set
-- revoked_at (a column since 001, which authentication already honours) and record who
-- revoked the key in revoked_by (the revoking key's id and tenant, or "cli" for the
-- database CLI), so the key row itself is the audit record. A nullable column that no
-- code before it reads or writes (0.2's key queries name their columns): compatible with 21.
ALTER TABLE dagq.api_keys ADD COLUMN revoked_by text;
