"""kdrepro: a reference reproduction of knowledge distillation, one notebook per paper."""

__version__ = "0.1.0"
