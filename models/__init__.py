"""intelliflow.models"""
