"""mailnet: MAIL and Robust-MAIL for multimodal medical image classification."""
from mailnet.api import evaluate, resume, train
from mailnet.data.images import load_image
from mailnet.models.registry import create_model, is_model, list_models, register_model

__version__ = "0.1.0"
__all__ = ["create_model", "evaluate", "is_model", "list_models", "load_image", "register_model", "resume", "train",
           "__version__"]
