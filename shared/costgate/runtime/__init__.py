"""A Lambda runtime for Python handlers that stream their HTTP response through API Gateway.

- `prelude`: the metadata prelude (status, headers, cookies, 8 NUL bytes) API Gateway's STREAM mode
  reads before the body; written on Lambda, read by the local stack's API Gateway stand-in.
- `api`: the Runtime API client, with the streaming response mode and its error trailers.
- `stream`: the response stream a handler writes to.
- `loop`: the loop over invocations, started by `exec-wrapper` through AWS_LAMBDA_EXEC_WRAPPER.
"""
