"""The scan engine: bytes and policy in, findings out. It knows nothing of GitHub."""
