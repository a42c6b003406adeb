"""Cryptographic helpers shared by the services: secret hashing and encryption at rest."""
