-- The tenant's profile from the provisioning wizard (description, contact name, resource tier, isolation, data
-- sources as name/kind/endpoint/secret name, module switches, security policy), as JSON. It holds no secret: a
-- data source's URL is in the secret store under the name it records. '{}' is a tenant from before the wizard.
ALTER TABLE tenants ADD COLUMN profile TEXT NOT NULL DEFAULT '{}';
