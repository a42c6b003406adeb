"""IdP API routes under /{issuer_id} (decision 1). Kept out of the Core API's OpenAPI document."""
