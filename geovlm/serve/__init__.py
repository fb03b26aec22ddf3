"""``geovlm serve``: one model behind an OpenAI-compatible HTTP API, with server-side batching.

`settings` holds the limits and the bind check, `images` decodes client images, `batcher` groups
concurrent requests into model batches, `engine` runs them, `app` is the FastAPI application.
"""
