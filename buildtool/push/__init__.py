"""The push wing: how a built image reaches the registry, and the registry's HTTP API."""
