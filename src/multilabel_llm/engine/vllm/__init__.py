"""engine/vllm"""
