"""tfigkd: knowledge distillation guided by Integrated Gradients for Keras 3."""

__version__ = "0.1.0"
