"""Requests this server makes to other systems (webhooks now; SMS gateways and upstream identity
providers later), kept apart from the APIs it serves: the address guard, signatures, the senders."""
