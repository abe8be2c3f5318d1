"""peftlab: parameter-efficient fine-tuning (LoRA and friends) in the Hugging Face PEFT
format, with one training loop for every method."""

from .api import evaluate, generate, load_adapter, merge, train
from .config import RunConfig, build_config
from .export import export
from .formats.peft import save_adapter
from .methods import METHODS, get_method
from .model.inject import merge_and_unload

__version__ = "0.1.0"

__all__ = ["RunConfig", "METHODS", "build_config", "evaluate", "export", "generate", "get_method",
           "load_adapter", "merge", "merge_and_unload", "save_adapter", "train"]
