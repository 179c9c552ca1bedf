"""LLM themes for clusters and neurons through the ``openai`` client: requests, replies, the label store."""
