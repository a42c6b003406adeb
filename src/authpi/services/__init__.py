"""Services: the rules of each resource, independent of HTTP."""
