"""The supervised baselines: LoRA SFT (peft), linear probes on hidden states, Demux (BERT)."""
