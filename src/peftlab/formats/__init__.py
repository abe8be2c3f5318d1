"""Files peftlab reads and writes for others: the Hugging Face PEFT adapter format,
saved runs (adapter or whole model), bitsandbytes' serialised 4-bit weights."""
