"""intelliflow.data"""
