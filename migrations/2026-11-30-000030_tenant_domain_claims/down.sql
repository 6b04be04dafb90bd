DROP TABLE tenant_domain_claims;
