"""intelliflow.system: the system model. End-to-end latency across device, edge and cloud
(:mod:`.latency`), the planner that picks paradigm, split point and rate point (:mod:`.planner`),
FLOP costs of models and codecs (:mod:`.costs`) and stage times measured on this machine
(:mod:`.measure`)."""
