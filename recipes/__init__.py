"""intelliflow.recipes"""
