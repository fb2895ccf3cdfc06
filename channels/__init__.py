"""intelliflow.channels"""
