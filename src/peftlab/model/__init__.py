"""Base models and adapter injection: loading (Hub, local, the embedded GGUF model),
swapping target modules for adapter layers, merging them back."""
