"""intelliflow.codec"""
