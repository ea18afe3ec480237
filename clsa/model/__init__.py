"""The model family: one CLSAForCausalLM class, five attention variants chosen by config."""

from clsa.model.cache import CLSACache
from clsa.model.modeling import CLSAForCausalLM, CLSAOutput, register_auto_classes

register_auto_classes()

__all__ = ["CLSACache", "CLSAForCausalLM", "CLSAOutput", "register_auto_classes"]
