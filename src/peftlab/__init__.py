"""peftlab: parameter-efficient fine-tuning (LoRA and friends) in the Hugging Face PEFT
format, with one training loop for every method."""

from .api import build_config, evaluate, generate, load_adapter, merge, train
from .config import RunConfig
from .inject import merge_and_unload
from .methods import METHODS, get_method
from .peft_format import save_adapter

__version__ = "0.1.0"

__all__ = ["RunConfig", "METHODS", "build_config", "evaluate", "generate", "get_method",
           "load_adapter", "merge", "merge_and_unload", "save_adapter", "train"]
