"""mailnet: MAIL and Robust-MAIL for multimodal medical image classification."""
from mailnet.data.images import load_image
from mailnet.models.registry import create_model, is_model, list_models

__version__ = "0.1.0"
__all__ = ["create_model", "is_model", "list_models", "load_image", "__version__"]
