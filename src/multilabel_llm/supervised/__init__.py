"""supervised"""
