"""Adapters that carry stop requests to institutions, one per `adapter` name in the registry."""
