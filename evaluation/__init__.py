"""intelliflow.evaluation"""
