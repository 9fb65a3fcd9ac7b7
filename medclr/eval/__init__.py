"""Evaluation: embeddings, metrics, retrieval, zero-shot classification, grounding and probes."""
