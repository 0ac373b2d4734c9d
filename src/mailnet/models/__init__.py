"""Networks assembled from ``mailnet.layers``; each module registers its models with the registry."""
from mailnet.models.registry import create_model, is_model, list_models, register_model

__all__ = ["create_model", "is_model", "list_models", "register_model"]
