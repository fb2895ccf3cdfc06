"""intelliflow.flow"""
