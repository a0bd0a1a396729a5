"""Remote GPU backend: gRPC server, RemoteBackend client, SSH tunnel."""
