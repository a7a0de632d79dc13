"""Operations: metrics for `GET /metrics` and structured, secret-free logs."""
